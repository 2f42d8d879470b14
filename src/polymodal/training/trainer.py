"""The training loop: a plain PyTorch loop with checkpoints and exact resume.

Read top to bottom: :func:`train` builds the data sets and the model from a
:class:`~polymodal.training.config.TrainConfig` and calls :meth:`Trainer.fit`, which runs

    for epoch:                       # data order: a permutation seeded by seed + epoch
        for batch:                   # AdamW, warmup + cosine, gradient clipping, autocast
            loss = task loss (+ auxiliary per-modality loss)
            every N steps: save checkpoints/last
        validate -> history row, metrics.jsonl / metrics.csv
        better monitor on validation? save checkpoints/best
        save checkpoints/last; stop early after `patience` epochs without improvement
    load checkpoints/best, evaluate the test split once

Model selection only ever looks at the validation set: the validation set is carved from
the training split by group (speaker, subject, video), as the test split is held out, and
the test split is evaluated once, at the end, with the best weights.

Everything a run draws at random (parameter init, data order, dropout) comes from seeded
generators whose states are saved in ``checkpoints/last``; ``fit(resume=True)`` continues
from there and ends with the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.modality import Schema
from polymodal.data.sample import Batch
from polymodal.data.splits import group_split
from polymodal.training.checkpoint import (
    atomic_write_text,
    checkpoint_exists,
    load_checkpoint,
    load_weights,
    remove_stale_temporaries,
    save_checkpoint,
)
from polymodal.training.config import TrainConfig
from polymodal.training.metrics import HIGHER_IS_BETTER, compute_metrics, task_metrics
from polymodal.training.schedule import build_scheduler
from polymodal.training.seed import rng_state, seed_everything, set_rng_state

logger = logging.getLogger("polymodal.training")

CHECKPOINTS = "checkpoints"
CONFIG_FILE = "config.yaml"
SCHEMA_FILE = "schema.json"
RESULTS_FILE = "results.json"
LOG_JSONL = "metrics.jsonl"
LOG_CSV = "metrics.csv"
# Config keys that may change between a run and its resumption without changing the result.
_RESUME_FREE_KEYS = {"progress", "log_every", "checkpoint_every_steps", "device", "output_dir"}


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        best_val: validation metrics of the best epoch (``monitor`` chose it).
        test: test metrics with the best weights, or ``None`` without a test set.
        epochs_run: epochs completed (fewer than ``optim.epochs`` after early stopping).
        seconds: wall time spent training, summed over resumptions.
        history: one row per epoch: ``epoch``, ``step``, ``lr``, ``train_loss``,
            ``val_<metric>`` ..., ``seconds``.
        best_epoch: the 1-based epoch whose weights are in ``checkpoints/best``.
        run_dir: the run folder.
    """

    best_val: dict[str, float]
    test: dict[str, float] | None
    epochs_run: int
    seconds: float
    history: list[dict[str, float]]
    best_epoch: int = 0
    run_dir: Path = field(default_factory=Path)


# --------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={name!r} but torch sees no CUDA device (torch {torch.__version__}). "
            "Use device=cpu or device=auto."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available here; use device=auto.")
    return dev


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``precision="bf16"`` (CPU too); a no-op for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_precision(device: torch.device, precision: str) -> None:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision='bf16' but {torch.cuda.get_device_name(device)} does not support bf16. "
            "Use precision=fp32."
        )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices/kernels (dim >= 2), none on biases and norms.

    Biases and normalisation weights are the 1-D parameters (nanoGPT's rule).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def task_loss(
    task: str,
    logits: Tensor,
    target: Tensor,
    regression_loss: str = "mse",
    reduction: str = "mean",
) -> Tensor:
    """The loss of ``task``: cross-entropy, MSE/L1, or BCE-with-logits (computed in fp32).

    Shape:
        logits: (B, C) classification, (B, 1) or (B,) regression, (B, K) multilabel.
        target: (B,) long, (B,) float, (B, K) float.
        returns: a scalar, or (B,) with ``reduction="none"`` (multilabel: mean over K).
    """
    logits = logits.float()
    if task == "classification":
        return F.cross_entropy(logits, target.long(), reduction=reduction)
    if task == "regression":
        pred = logits.reshape(logits.shape[0], -1)
        if pred.shape[1] != 1:
            raise ValueError(
                f"A regression model must output (B, 1) or (B,), got {tuple(logits.shape)}."
            )
        fn = F.l1_loss if regression_loss == "l1" else F.mse_loss
        return fn(pred[:, 0], target.float().reshape(-1), reduction=reduction)
    if task == "multilabel":
        loss = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        per_example = loss.mean(-1)
        return per_example if reduction == "none" else per_example.mean()
    raise ValueError(f"Unknown task {task!r}; expected classification, regression or multilabel.")


def _outputs_logits(out: Any) -> Tensor:
    logits = out.logits if hasattr(out, "logits") else out
    if not isinstance(logits, Tensor):
        raise TypeError(
            f"The model must return a Tensor or an object with a .logits Tensor (ModelOutput); "
            f"got {type(out).__name__}."
        )
    return logits


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` seeded by ``seed + epoch``, starting at position ``start``.

    Skipping the first ``start`` indices lets a run resumed in the middle of an epoch see
    exactly the batches the interrupted run had not seen yet.
    """

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=gen)[self.start :].tolist())

    def __len__(self) -> int:
        return max(0, self.n - self.start)


def _loader(
    dataset: MultimodalDataset,
    batch_size: int,
    sampler: Sampler[int] | None = None,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader[Any]:
    # An explicit generator: otherwise DataLoader draws its worker base seed from the
    # global torch RNG at every iteration, shifting dropout between runs and resumptions.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=dataset.collator(),
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
    )


@dataclass
class Predictions:
    """Raw outputs of a model over a data set (CPU).

    Attributes:
        ids: the N example ids.
        outputs: (N, K) float32 logits (K = 1 for regression).
        targets: (N,) or (N, K) targets, or ``None`` for an unlabelled data set.
    """

    ids: list[str]
    outputs: Tensor
    targets: Tensor | None


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: MultimodalDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    precision: str = "fp32",
    num_workers: int = 0,
) -> Predictions:
    """Run ``model`` in eval mode over ``dataset`` in order; returns the raw outputs.

    The model is moved to ``device`` (in place, as ``model.to`` does) and its train/eval
    mode is restored afterwards.
    """
    device = torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    ids: list[str] = []
    outs: list[Tensor] = []
    targets: list[Tensor] = []
    try:
        loader = _loader(dataset, batch_size, num_workers=num_workers)
        for batch in loader:
            batch = batch.to(device)
            with autocast(device, precision):
                logits = _outputs_logits(model(batch))
            outs.append(logits.float().reshape(logits.shape[0], -1).cpu())
            ids += batch.ids
            if batch.target is not None:
                targets.append(batch.target.cpu())
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError(f"Data set {dataset.name!r} (split {dataset.split!r}) is empty.")
    return Predictions(ids, torch.cat(outs), torch.cat(targets) if targets else None)


def evaluate(
    model: nn.Module,
    dataset: MultimodalDataset,
    task: str | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    precision: str = "fp32",
    regression_loss: str = "mse",
    num_workers: int = 0,
) -> dict[str, float]:
    """Metrics of ``model`` on ``dataset`` (see :func:`~polymodal.training.metrics.compute_metrics`)
    plus ``loss``; ``task`` defaults to ``model.task`` or the data set's."""
    task = task or getattr(model, "task", None) or dataset.schema.target.task
    pred = predict(model, dataset, device, batch_size, precision, num_workers)
    if pred.targets is None:
        raise ValueError(
            f"Data set {dataset.name!r} (split {dataset.split!r}) has no labels; evaluate needs "
            "a labelled split (use predict for unlabelled data)."
        )
    out = pred.outputs
    if task == "regression":
        out = out[:, 0]
    metrics = compute_metrics(task, out, pred.targets)
    metrics["loss"] = float(task_loss(task, pred.outputs, pred.targets, regression_loss))
    return metrics


def _better(value: float, best: float | None, higher: bool) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if higher else value < best


def module_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Every :class:`torch.Generator` held as an attribute by ``model`` or its submodules
    (e.g. a model's modality-dropout generator), keyed ``"<module path>:<attribute>"``.

    Their states are not in ``state_dict``; checkpoints save them so that resuming draws
    the same numbers.
    """
    out: dict[str, torch.Generator] = {}
    for path, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator):
                out[f"{path}:{attr}"] = value
    return out


def _write_logs(run_dir: Path, history: Sequence[dict[str, Any]]) -> None:
    """``metrics.jsonl`` and ``metrics.csv``, rewritten from the full history (atomically), so
    a resumed run's logs never repeat or miss an epoch."""
    atomic_write_text(run_dir / LOG_JSONL, "".join(json.dumps(r) + "\n" for r in history))
    columns: list[str] = []
    for r in history:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / LOG_CSV, buf.getvalue())


def _show_progress(cfg: TrainConfig) -> bool:
    return cfg.progress and sys.stderr.isatty()


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Trains ``model`` on ``train_ds``, selects on ``val_ds``, reports ``test_ds`` once.

    Args:
        cfg: the run's :class:`TrainConfig` (optimiser, schedule, device, checkpoints).
        model: returns a ``ModelOutput`` (``.logits`` (B, K), optional ``.modality_logits``)
            from a :class:`~polymodal.data.sample.Batch`; ``model.task`` and
            ``model.num_outputs`` are read when present, else the data set's target.
        train_ds, val_ds, test_ds: data sets with the same schema.

    Run folder (``cfg.run_dir``): ``config.yaml``, ``schema.json``, ``metrics.jsonl``,
    ``metrics.csv``, ``results.json`` and ``checkpoints/{last,best}/``.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        train_ds: MultimodalDataset,
        val_ds: MultimodalDataset,
        test_ds: MultimodalDataset | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.train_ds, self.val_ds, self.test_ds = train_ds, val_ds, test_ds
        self.schema: Schema = train_ds.schema
        target = self.schema.target
        self.task: str = getattr(model, "task", target.task)
        if self.task != target.task:
            raise ValueError(
                f"The model's task is {self.task!r} but data set {train_ds.name!r} has task "
                f"{target.task!r}. Build the model from this data set's schema."
            )
        self.num_outputs: int = int(getattr(model, "num_outputs", target.num_classes))
        names = task_metrics(self.task, self.num_outputs)
        if cfg.monitor not in names:
            raise ValueError(
                f"monitor={cfg.monitor!r} is not computed for a {self.task} task with "
                f"{self.num_outputs} outputs; choose one of {names}, e.g. monitor={names[0]}."
            )
        for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
            if ds is not None and len(ds) == 0:
                raise ValueError(f"The {name} data set is empty; check data.* in the config.")
        self.higher = HIGHER_IS_BETTER[cfg.monitor]
        self.device = resolve_device(cfg.device)
        _check_precision(self.device, cfg.precision)
        self.run_dir = cfg.run_dir
        self.ckpt_dir = self.run_dir / CHECKPOINTS

    # ---------------------------------------------------------------- bookkeeping

    def _files(self) -> dict[str, str]:
        return {CONFIG_FILE: self.cfg.to_yaml(), SCHEMA_FILE: json.dumps(self.schema.to_dict())}

    def _steps(self) -> tuple[int, int]:
        per_epoch = math.ceil(len(self.train_ds) / self.cfg.data.batch_size)
        total = per_epoch * self.cfg.optim.epochs
        if self.cfg.optim.max_steps is not None:
            total = min(total, self.cfg.optim.max_steps)
        return per_epoch, total

    def _check_resumable(self, saved_yaml: str) -> None:
        saved = TrainConfig.from_yaml(saved_yaml).to_dict()
        now = self.cfg.to_dict()
        diff = sorted(
            k
            for k in set(saved) | set(now)
            if k not in _RESUME_FREE_KEYS and saved.get(k) != now.get(k)
        )
        if diff:
            raise ValueError(
                f"Cannot resume {self.run_dir}: the config differs from the interrupted run's in "
                f"{diff}. Resume with the same config (saved in {self.ckpt_dir / 'last'}), or "
                "start a new run with another output_dir."
            )

    def _clear_previous_run(self) -> None:
        """A fresh (not resumed) run replaces what an earlier run left in its folder, so
        no stale checkpoint or log is mixed with the new run's."""
        stale = [self.ckpt_dir] + [
            self.run_dir / f
            for f in (RESULTS_FILE, LOG_JSONL, LOG_CSV)
            if (self.run_dir / f).exists()
        ]
        if self.ckpt_dir.exists():
            logger.warning(
                "%s holds an earlier run; starting over (pass resume=True / --resume to "
                "continue it instead)",
                self.run_dir,
            )
            shutil.rmtree(self.ckpt_dir)
        for p in stale[1:]:
            p.unlink()

    # ---------------------------------------------------------------- one step

    def _loss(self, out: Any, batch: Batch) -> Tensor:
        if batch.target is None:
            raise ValueError("A training batch has no targets; training needs labelled data.")
        loss = task_loss(
            self.task, _outputs_logits(out), batch.target, self.cfg.optim.regression_loss
        )
        w = self.cfg.optim.aux_loss_weight
        mod_logits = getattr(out, "modality_logits", None)
        if w > 0 and mod_logits:
            aux = []
            for name in sorted(mod_logits):
                per = task_loss(
                    self.task,
                    mod_logits[name],
                    batch.target,
                    self.cfg.optim.regression_loss,
                    "none",
                )
                present = (
                    batch[name].present.to(per.dtype) if name in batch else torch.ones_like(per)
                )
                aux.append((per * present).sum() / present.sum().clamp_min(1.0))
            loss = loss + w * torch.stack(aux).mean()
        return loss

    # ---------------------------------------------------------------- fit

    def fit(self, resume: bool = False) -> TrainResult:
        """Train, validating every epoch; return the best validation and the test metrics.

        Args:
            resume: continue from ``checkpoints/last`` of ``cfg.run_dir`` (same config
                required) with its weights, optimizer, schedule, RNG and data position.
        """
        cfg, model, device = self.cfg, self.model, self.device
        opt_cfg = cfg.optim
        _, total_steps = self._steps()
        last_dir, best_dir = self.ckpt_dir / "last", self.ckpt_dir / "best"
        remove_stale_temporaries(self.ckpt_dir)

        seed_everything(cfg.seed)
        model.to(device)
        optimizer = torch.optim.AdamW(
            param_groups(model, opt_cfg.weight_decay), lr=opt_cfg.lr, betas=opt_cfg.betas
        )
        scheduler = build_scheduler(
            optimizer, total_steps, opt_cfg.warmup_ratio, opt_cfg.min_lr_ratio
        )

        state: dict[str, Any] = {
            "epoch": 0,  # epochs completed
            "step_in_epoch": 0,  # batches done in the current epoch
            "global_step": 0,
            "best": None,
            "best_epoch": 0,
            "bad_epochs": 0,
            "history": [],
            "loss_sum": 0.0,
            "loss_count": 0,
            "seconds": 0.0,
            "finished": False,
            "monitor": cfg.monitor,
        }
        if resume:
            if not checkpoint_exists(last_dir):
                raise FileNotFoundError(
                    f"resume=True but there is no checkpoint in {last_dir}. Run without --resume "
                    "to start training, or point output_dir at the interrupted run."
                )
            ckpt = load_checkpoint(last_dir)
            self._check_resumable(ckpt.text(CONFIG_FILE))
            load_weights(model, ckpt.weights, str(last_dir))
            optimizer.load_state_dict(ckpt.trainer_state["optimizer"])
            scheduler.load_state_dict(ckpt.trainer_state["scheduler"])
            state.update({k: v for k, v in ckpt.state.items() if k in state})
            set_rng_state(ckpt.state["rng"], ckpt.trainer_state["rng"])
            saved_gens = ckpt.trainer_state.get("generators", {})
            for key, gen in module_generators(model).items():
                if key in saved_gens:
                    gen.set_state(saved_gens[key])
            logger.info(
                "resumed %s at epoch %d, step %d", last_dir, state["epoch"], state["global_step"]
            )
        else:
            self._clear_previous_run()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for name, text in self._files().items():
            atomic_write_text(self.run_dir / name, text)

        def save_last() -> None:
            json_rng, tensor_rng = rng_state()
            save_checkpoint(
                last_dir,
                model.state_dict(),
                {**state, "rng": json_rng},
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": tensor_rng,
                    "generators": {k: g.get_state() for k, g in module_generators(model).items()},
                },
                self._files(),
            )

        started = time.perf_counter()
        seconds_before = float(state["seconds"])
        while not state["finished"]:
            epoch = int(state["epoch"])
            epoch_start = time.perf_counter()
            model.train()
            skip = int(state["step_in_epoch"]) * cfg.data.batch_size
            loader = _loader(
                self.train_ds,
                cfg.data.batch_size,
                EpochSampler(len(self.train_ds), cfg.seed, epoch, skip),
                cfg.data.num_workers,
                seed=cfg.seed + epoch,
                pin_memory=device.type == "cuda",
            )
            bar = tqdm(
                loader,
                total=len(loader),
                desc=f"epoch {epoch + 1}/{opt_cfg.epochs}",
                disable=not _show_progress(cfg),
                leave=False,
                dynamic_ncols=True,
            )
            out_of_steps = False
            for batch in bar:
                batch = batch.to(device, non_blocking=True)
                with autocast(device, cfg.precision):
                    out = model(batch)
                loss = self._loss(out, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"The training loss is {loss.item()} at step {state['global_step'] + 1}. "
                        f"Lower optim.lr (now {opt_cfg.lr}) or set optim.grad_clip."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if opt_cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), opt_cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                state["global_step"] += 1
                state["step_in_epoch"] += 1
                state["loss_sum"] += float(loss.detach()) * batch.batch_size
                state["loss_count"] += batch.batch_size
                if state["global_step"] % cfg.log_every == 0:
                    shown = {"loss": f"{state['loss_sum'] / state['loss_count']:.4f}"}
                    if state["best"] is not None:
                        shown[f"best_val_{cfg.monitor}"] = f"{state['best']:.4f}"
                    bar.set_postfix(shown)
                out_of_steps = state["global_step"] >= total_steps
                every = cfg.checkpoint_every_steps
                if every is not None and state["global_step"] % every == 0 and not out_of_steps:
                    state["seconds"] = seconds_before + time.perf_counter() - started
                    save_last()
                if out_of_steps:
                    break
            bar.close()

            val = evaluate(
                model,
                self.val_ds,
                self.task,
                device,
                cfg.data.batch_size,
                cfg.precision,
                opt_cfg.regression_loss,
                cfg.data.num_workers,
            )
            if cfg.monitor not in val:
                raise ValueError(
                    f"monitor={cfg.monitor!r} could not be computed on the validation set "
                    f"(got {sorted(val)}); auroc needs both classes in it. Use monitor=accuracy "
                    "or a larger data.val_fraction."
                )
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": state["global_step"],
                "lr": scheduler.get_last_lr()[0],
                "train_loss": state["loss_sum"] / max(1, state["loss_count"]),
                **{f"val_{k}": v for k, v in val.items()},
                "seconds": time.perf_counter() - epoch_start,
            }
            state["history"].append(row)
            value = float(val[cfg.monitor])
            state.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, loss_count=0)
            if _better(value, state["best"], self.higher):
                state["best"], state["best_epoch"], state["bad_epochs"] = value, epoch + 1, 0
                save_checkpoint(
                    best_dir, model.state_dict(), {**state, "val": val}, None, self._files()
                )
            else:
                state["bad_epochs"] += 1
            logger.info(
                "epoch %d/%d  train_loss %.4f  val_%s %.4f  (best %.4f at epoch %d)",
                epoch + 1,
                opt_cfg.epochs,
                row["train_loss"],
                cfg.monitor,
                value,
                state["best"] if state["best"] is not None else float("nan"),
                state["best_epoch"],
            )
            stop_early = cfg.patience is not None and state["bad_epochs"] >= cfg.patience
            if stop_early:
                logger.info(
                    "early stop: no better val_%s for %d epochs", cfg.monitor, state["bad_epochs"]
                )
            if stop_early or out_of_steps or state["epoch"] >= opt_cfg.epochs:
                state["finished"] = True
            state["seconds"] = seconds_before + time.perf_counter() - started
            _write_logs(self.run_dir, state["history"])
            save_last()

        return self._finish(state)

    def _finish(self, state: dict[str, Any]) -> TrainResult:
        """Load the best weights, evaluate the test split once, write ``results.json``."""
        best = load_checkpoint(self.ckpt_dir / "best", with_trainer_state=False)
        load_weights(self.model, best.weights, str(best.path))
        best_val = {k: float(v) for k, v in best.state["val"].items()}
        test = None
        if self.test_ds is not None:
            test = evaluate(
                self.model,
                self.test_ds,
                self.task,
                self.device,
                self.cfg.data.batch_size,
                self.cfg.precision,
                self.cfg.optim.regression_loss,
                self.cfg.data.num_workers,
            )
        result = TrainResult(
            best_val=best_val,
            test=test,
            epochs_run=int(state["epoch"]),
            seconds=float(state["seconds"]),
            history=list(state["history"]),
            best_epoch=int(state["best_epoch"]),
            run_dir=self.run_dir,
        )
        atomic_write_text(
            self.run_dir / RESULTS_FILE,
            json.dumps(
                {
                    "monitor": self.cfg.monitor,
                    "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run,
                    "seconds": result.seconds,
                    "val": best_val,
                    "test": test,
                },
                indent=1,
            )
            + "\n",
        )
        return result


# --------------------------------------------------------------------------- train(cfg)


def _split_loader(cfg: TrainConfig) -> Callable[[str | None], MultimodalDataset]:
    """A function from a split name to that split of ``cfg.data``'s data set."""
    d = cfg.data
    if d.dataset is not None:
        from polymodal.data.datasets import load_dataset

        name = d.dataset

        def load_builtin(split: str | None) -> MultimodalDataset:
            return load_dataset(name, split=str(split), root=d.root, **d.options)

        return load_builtin

    from polymodal.data.manifest import ManifestDataset

    manifest = str(d.manifest)

    def load_manifest(split: str | None) -> MultimodalDataset:
        return ManifestDataset(manifest, schema=d.schema, split=split, **d.options)

    return load_manifest


def build_datasets(
    cfg: TrainConfig,
) -> tuple[MultimodalDataset, MultimodalDataset, MultimodalDataset | None]:
    """``(train, val, test)`` for ``cfg.data``: a built-in data set or a manifest.

    Validation is ``data.val_split`` when set, else carved from the training split by group
    with :func:`~polymodal.data.splits.group_split` (``data.val_fraction``, ``seed``), so
    no speaker/subject/video is on both sides.  The test split is loaded here (a missing
    one fails before training) but only evaluated at the end.
    """
    d = cfg.data
    load = _split_loader(cfg)
    full = load(d.train_split)
    test = load(d.test_split) if d.test_split is not None else None
    if d.val_split is not None:
        return full, load(d.val_split), test
    train_idx, val_idx = group_split(full.groups(), d.val_fraction, cfg.seed)
    return full.subset(train_idx), full.subset(val_idx), test


def dataset_for_split(cfg: TrainConfig, split: str) -> MultimodalDataset:
    """One split as the run saw it: ``"train"`` and ``"val"`` (after carving validation
    out of train), ``"test"`` (``data.test_split``), or any other split name of the data."""
    d = cfg.data
    load = _split_loader(cfg)
    if split == "test":
        if d.test_split is None:
            raise ValueError(
                "The run's config has data.test_split=null, so it has no test split; "
                "pass --split val, or the name of a split of the data set."
            )
        return load(d.test_split)
    if split in ("train", "val"):
        if d.val_split is not None:
            return load(d.train_split if split == "train" else d.val_split)
        full = load(d.train_split)
        train_idx, val_idx = group_split(full.groups(), d.val_fraction, cfg.seed)
        return full.subset(train_idx if split == "train" else val_idx)
    return load(split)


@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint folder.

    Attributes:
        model: the model with the checkpoint's weights, in eval mode, on CPU.
        config: the run's :class:`TrainConfig`.
        schema: the schema of the data set it was trained on.
        path: the checkpoint folder.
        state: the checkpoint's JSON state (epoch, step, validation metrics).
    """

    model: nn.Module
    config: TrainConfig
    schema: Schema
    path: Path
    state: dict[str, Any]


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A checkpoint folder from ``path``: the folder itself, or a run folder's
    ``checkpoints/<which>``."""
    p = Path(path)
    if (p / "state.json").is_file() or (p.parent / f".{p.name}.old" / "state.json").is_file():
        return p
    if (p / CHECKPOINTS / which / "state.json").is_file():
        return p / CHECKPOINTS / which
    raise FileNotFoundError(
        f"{str(p)!r} is neither a checkpoint folder (with state.json and model.safetensors) nor "
        f"a run folder with {CHECKPOINTS}/{which}/. Pass e.g. runs/NAME or "
        f"runs/NAME/{CHECKPOINTS}/best."
    )


def load_trained(path: str | Path, which: str = "best") -> TrainedModel:
    """Rebuild the model saved in a checkpoint (or run) folder from its own config and
    schema, and load its weights; weights of another model fail naming the keys/shapes."""
    from polymodal.models import build_model

    folder = resolve_checkpoint(path, which)
    ckpt = load_checkpoint(folder, with_trainer_state=False)
    cfg = TrainConfig.from_yaml(ckpt.text(CONFIG_FILE))
    schema = Schema.from_dict(json.loads(ckpt.text(SCHEMA_FILE)))
    model = build_model(cfg.model, schema, seed=cfg.seed)
    load_weights(model, ckpt.weights, str(folder))
    model.eval()
    return TrainedModel(model, cfg, schema, folder, ckpt.state)


def train(cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Build the data sets and the model of ``cfg``, train, and evaluate the test split."""
    from polymodal.models import build_model

    train_ds, val_ds, test_ds = build_datasets(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, train_ds.schema, seed=cfg.seed)
    return Trainer(cfg, model, train_ds, val_ds, test_ds).fit(resume=resume)


__all__ = [
    "EpochSampler",
    "Predictions",
    "TrainResult",
    "TrainedModel",
    "Trainer",
    "autocast",
    "build_datasets",
    "dataset_for_split",
    "evaluate",
    "load_trained",
    "param_groups",
    "predict",
    "resolve_checkpoint",
    "resolve_device",
    "task_loss",
    "train",
]
