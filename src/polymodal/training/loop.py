"""The one training loop: every training mode is a :class:`Strategy` run by :class:`Trainer`.

The loop owns everything a mode has in common; a strategy owns only what differs (its
model, the batches of an epoch, a step's loss, an evaluation)::

    strategy.setup(device)                       # e.g. cache frozen encoders' features
    AdamW(param groups), warmup + cosine schedule over min(epochs * steps, max_steps)
    for epoch:
        for batch in strategy.batches(epoch, start):     # seeded by seed + epoch
            with autocast: loss, n = strategy.loss(batch)
            backward; strategy.before_step(); clip, step, schedule; every N steps: last
        val = strategy.evaluate("val")           # never the test split
        strategy.end_epoch(epoch)                # e.g. re-estimate loss weights; logged
        history row -> metrics.jsonl / metrics.csv; better monitor? checkpoints/best
        checkpoints/last; stop early after `patience` epochs without improvement
    load checkpoints/best, evaluate "test" once, results.json

Everything a run draws at random (parameter init, data order, dropout, a strategy's own
generators) is seeded, and the states are saved in ``checkpoints/last``, so
``fit(resume=True)`` after a SIGKILL ends with the same weights, bit for bit, as a run
that was never interrupted.  Model selection only ever looks at the validation split.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from polymodal.checkpoint import (
    CHECKPOINTS,
    WEIGHTS,
    atomic_write_text,
    checkpoint_exists,
    load_checkpoint,
    load_weights,
    remove_checkpoint_tree,
    remove_stale_temporaries,
    save_checkpoint,
)
from polymodal.checkpoint_files import restoring
from polymodal.device import autocast, check_precision
from polymodal.metrics import HIGHER_IS_BETTER
from polymodal.training import distributed as dist
from polymodal.training.config import RunConfig, resume_differences
from polymodal.training.params import adamw, module_generators, param_groups
from polymodal.training.resume import RESUME_ADVICE, check_resumable_state, restore_trainer_state
from polymodal.training.rundir import LOG_CSV, LOG_JSONL, RESULTS_FILE, claim_run_dir, write_logs
from polymodal.training.schedule import WarmupCosine, scheduled_lr, warmup_steps_for
from polymodal.training.seed import rng_state, seed_everything
from polymodal.training.selection import improves
from polymodal.training.steps import LossSum
from polymodal.training.timelimit import TimeLimit

logger = logging.getLogger("polymodal.training")

CONFIG_FILE = "config.yaml"


class Strategy(ABC):
    """One training mode: what the loop trains, on which batches, with which loss.

    Subclasses set ``model`` and ``cfg`` and implement the abstract methods; the defaults
    of the others fit a model whose every weight is checkpointed.
    """

    model: nn.Module
    cfg: RunConfig
    device: torch.device = torch.device("cpu")
    #: ``distributed.parallel=fsdp`` may shard :meth:`trainable`: it is the model whose
    #: forward :meth:`loss` and :meth:`evaluate` call, its state dict :meth:`weights`.
    shardable: bool = False
    #: :meth:`evaluate` can hide a modality from every example (``monitor_without``).
    drops_modalities: bool = False

    def setup(self, device: torch.device) -> None:
        """Prepare to train on ``device`` (move the model; cache features); called once."""
        self.device = device
        self.model.to(device)

    def trainable(self) -> nn.Module:
        """The module whose trainable parameters the optimiser updates."""
        return self.model

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Optimisation steps in one epoch (>= 1)."""

    @abstractmethod
    def batches(self, epoch: int, start: int) -> Iterator[Any]:
        """The batches of ``epoch`` (0-based) from step ``start`` on, in a seeded order
        that depends only on the run's seed and ``epoch`` (so a resumed epoch continues)."""

    @abstractmethod
    def loss(self, batch: Any) -> tuple[Tensor, int]:
        """``(mean loss, examples)`` of one training batch (the loop has set train mode
        and autocast)."""

    @abstractmethod
    def evaluate(self, split: str) -> dict[str, float] | None:
        """Metrics of the model on ``"val"`` or ``"test"``; ``None`` when the run has none."""

    def before_step(self) -> None:  # noqa: B027 - optional hook
        """Called after ``loss.backward()``, before gradient clipping and the optimiser
        step: a strategy may rewrite the gradients here (modality-imbalance methods)."""

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after the validation of 1-based ``epoch``; the entries returned are
        added to the epoch's history row (e.g. re-estimated loss weights)."""
        return {}

    def higher_is_better(self, monitor: str) -> bool:
        """Whether a larger ``monitor`` is better."""
        return HIGHER_IS_BETTER.get(monitor, monitor != "loss")

    def weights(self) -> dict[str, Tensor]:
        """The weights a checkpoint stores."""
        return dict(self.model.state_dict())

    def load_weights(self, weights: dict[str, Tensor], source: str) -> None:
        """Load checkpoint ``weights`` (checked) into the model."""
        load_weights(self.model, weights, source)

    def extra_state(self) -> dict[str, Tensor]:
        """Tensors outside :meth:`weights` that a resumed run needs (a loss temperature)."""
        return {}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:  # noqa: B027 - optional
        """Restore :meth:`extra_state`."""

    def files(self) -> dict[str, str]:
        """Text files kept in the run folder and in every checkpoint (``config.yaml``, ...)."""
        return {CONFIG_FILE: self.cfg.to_yaml()}

    def checkpoint_state(self) -> dict[str, Any]:
        """Extra JSON state every checkpoint carries (e.g. frozen encoders' checksums)."""
        return {}

    def generators(self) -> dict[str, torch.Generator]:
        """Random generators outside the global ones whose states a resumed run needs."""
        return module_generators(self.model)

    def info(self) -> dict[str, Any]:
        """Extra facts for :attr:`TrainResult.info` (feature seconds, temperatures)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what training held (data loader worker processes); called after fit."""


@dataclass
class LoopState:
    """Where a run is; saved in ``state.json`` of every checkpoint.

    Attributes:
        epoch: epochs completed.
        step_in_epoch: steps done in the current epoch.
        global_step: optimisation steps done.
        best: the best validation ``monitor`` so far (``None``: none yet or no validation).
        best_loss: the validation loss of that epoch (breaks ties of ``monitor``).
        best_epoch: the 1-based epoch whose weights are in ``checkpoints/best``.
        bad_epochs: epochs since the last improvement.
        history: one row per epoch (``epoch``, ``step``, ``lr``, ``train_loss``,
            ``val_<metric>``..., ``seconds``).
        loss_sum, loss_count: the current epoch's summed training loss and examples.
        seconds: wall time spent training, summed over resumptions.
        finished: no more epochs to run.
        time_limited: ``optim.time_limit`` ended the run (a resumption with more time goes on).
        monitor: the validation metric that selects the best epoch.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float | None = None
    best_loss: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    loss_sum: float = 0.0
    loss_count: int = 0
    seconds: float = 0.0
    finished: bool = False
    time_limited: bool = False
    monitor: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainResult:
    """What every training run returns.

    Attributes:
        best_val: validation metrics of the best epoch (``None`` without validation).
        test: test metrics with the best weights, or ``None`` without a test split.
        epochs_run: epochs completed (fewer than ``optim.epochs`` after early stopping).
        seconds: wall time spent training, summed over resumptions.
        history: one row per epoch (see :class:`LoopState`).
        best_epoch: the 1-based epoch whose weights are in ``checkpoints/best``.
        run_dir: the run folder (``cfg.run_dir``, or ``<run_dir>-2``... when that held a run).
        info: the strategy's extra facts (e.g. ``feature_seconds``, ``temperatures``).
    """

    best_val: dict[str, float] | None
    test: dict[str, float] | None
    epochs_run: int
    seconds: float
    history: list[dict[str, float]]
    best_epoch: int = 0
    run_dir: Path = field(default_factory=Path)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        """``<run>/checkpoints/best``: what ``evaluate``, ``predict`` and ``embed`` take."""
        return self.run_dir / CHECKPOINTS / "best"


class Callback:
    """Hooks into :class:`Trainer`; override the ones you need (all do nothing here)."""

    def on_step_end(self, trainer: Trainer, state: LoopState, loss: float) -> None:
        """After each optimisation step, with its loss (reading it makes the host wait
        for the device; the loop calls only callbacks that override this method)."""

    def on_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any]) -> None:
        """After an epoch's validation, with its history row."""

    def on_checkpoint(self, trainer: Trainer, which: str, path: Path) -> None:
        """After ``checkpoints/<which>`` (``"last"`` or ``"best"``) was written."""


class Trainer:
    """Runs a :class:`Strategy`: the one loop of every training mode.

    Args:
        cfg: the run's config (optimiser, schedule, device, checkpoints, early stopping).
        strategy: the training mode, holding its model and data.
        callbacks: hooks called during training.

    Run folder (``cfg.run_dir``, else the next free ``<run_dir>-N``; see :meth:`fit`): the
    strategy's files (``config.yaml``, ...), ``metrics.jsonl``, ``metrics.csv``,
    ``results.json``, ``checkpoints/{last,best}/`` and, while training, ``train.lock``.
    """

    def __init__(
        self, cfg: RunConfig, strategy: Strategy, callbacks: Sequence[Callback] = ()
    ) -> None:
        self.cfg = cfg
        self.strategy = strategy
        self.callbacks = list(callbacks)
        self.dist = dist.current()  # torchrun: rank 0 alone writes (distributed.py)
        self.device = dist.rank_device(cfg.device, self.dist)
        check_precision(self.device, cfg.precision)
        self.run_dir = cfg.run_dir
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        self.higher = strategy.higher_is_better(cfg.monitor)
        if cfg.monitor_without and not strategy.drops_modalities:
            raise ValueError(
                f"monitor_without={list(cfg.monitor_without)} is for supervised and context "
                f"runs; a {cfg.task!r} run cannot hide a modality from validation. Remove it."
            )
        optim = getattr(cfg, "optim", None)
        if optim is None:
            raise TypeError(f"{type(cfg).__name__} has no 'optim' section; the loop needs one.")
        self.optim = optim

    # ---------------------------------------------------------------- bookkeeping

    def _total_steps(self) -> int:
        total = self.strategy.steps_per_epoch() * self.optim.epochs
        if self.optim.max_steps is not None:
            total = min(total, self.optim.max_steps)
        return total

    def _scheduler(self, optimizer: torch.optim.Optimizer, total: int) -> LambdaLR:
        warmup = self.optim.warmup_steps
        if warmup is None:
            warmup = warmup_steps_for(total, self.optim.warmup_ratio)
        fn = WarmupCosine(total, min(warmup, max(0, total - 1)), self.optim.min_lr_ratio)
        return LambdaLR(optimizer, fn)

    def _check_resumable(self, saved_yaml: str, file: Path) -> None:
        with restoring(file, "the run's config", RESUME_ADVICE):
            saved = type(self.cfg).from_yaml(saved_yaml).to_dict()
        diff = resume_differences(saved, self.cfg.to_dict())
        if diff:
            raise ValueError(
                f"Cannot resume {self.run_dir}: the config differs from the interrupted run's in "
                f"{diff}. Resume with the same config (saved in {self.ckpt_dir / 'last'}), or "
                "train without --resume: the new run goes beside this one, which is kept."
            )

    def _clear_previous_run(self) -> None:
        """A fresh run's folder is new or holds no run; ``overwrite=True`` replaces the run
        in it, so no stale checkpoint or log is mixed with the new run's."""
        if self.ckpt_dir.exists():
            logger.warning("overwrite=True: replacing the earlier run in %s", self.run_dir)
            remove_checkpoint_tree(self.ckpt_dir)
        for name in (RESULTS_FILE, LOG_JSONL, LOG_CSV):
            (self.run_dir / name).unlink(missing_ok=True)

    def _save(self, which: str, state: LoopState, extra: dict[str, Any], full: bool) -> None:
        """Write ``checkpoints/<which>``; ``full`` adds optimiser/schedule/RNG states."""
        strategy, parallel = self.strategy, self._step_loss
        weights = parallel.weights()  # under FSDP every rank gathers; rank 0 writes
        optimizer = parallel.optimizer_state(self._optimizer) if full else {}
        if not self.dist.is_main:
            return
        json_state: dict[str, Any] = {**asdict(state), **extra, **strategy.checkpoint_state()}
        trainer_state: dict[str, Any] = {"strategy": strategy.extra_state()}
        if full:
            json_rng, tensor_rng = rng_state()
            json_state["rng"] = json_rng
            trainer_state.update(
                optimizer=optimizer,
                scheduler=self._scheduler_obj.state_dict(),
                rng=tensor_rng,
                generators={k: g.get_state() for k, g in strategy.generators().items()},
            )
        path = save_checkpoint(
            self.ckpt_dir / which,
            weights,
            json.loads(json.dumps(json_state, default=float)),
            trainer_state,
            strategy.files(),
        )
        for cb in self.callbacks:
            cb.on_checkpoint(self, which, path)

    def _resume(self, state: LoopState) -> LoopState:
        last = self.ckpt_dir / "last"
        ckpt = load_checkpoint(last)
        self._check_resumable(ckpt.text(CONFIG_FILE), ckpt.path / CONFIG_FILE)
        check_resumable_state(ckpt, LoopState)
        self._step_loss.load_weights(ckpt.weights, str(ckpt.path / WEIGHTS))
        restore_trainer_state(
            ckpt,
            self._optimizer,
            self._step_loss.load_optimizer_state,
            self._scheduler_obj,
            self.strategy.generators(),
            self.strategy.load_extra_state,
        )
        state = LoopState.from_dict(ckpt.state)
        logger.info("resumed %s at epoch %d, step %d", last, state.epoch, state.global_step)
        return state

    def _show_progress(self) -> bool:
        return self.cfg.progress and self.dist.is_main and sys.stderr.isatty()

    # ---------------------------------------------------------------- fit

    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train, validating every epoch; return the best validation and the test metrics.

        The run folder is ``cfg.run_dir``, or, when that holds an earlier run, the first
        free ``<run_dir>-2``, ``-3``, ... (never overwritten; ``<run_dir>.latest`` names the
        newest; see :mod:`polymodal.training.rundir`).  It is locked while the run trains.

        Args:
            resume: continue from ``checkpoints/last`` of ``cfg.run_dir`` (same config
                required) with its weights, optimiser, schedule, RNG and data position.
            overwrite: replace the run in ``cfg.run_dir`` instead of keeping it.
        """
        last = self.cfg.run_dir / CHECKPOINTS / "last"
        if resume and not overwrite and not checkpoint_exists(last):
            raise FileNotFoundError(
                f"Cannot resume (--resume, resume=True): there is no checkpoint in {last}. "
                "Train without --resume to start, or point output_dir at the interrupted run."
            )
        lock = None
        if self.dist.is_main:
            self.run_dir, lock = claim_run_dir(self.cfg.run_dir, resume, overwrite)
        self.run_dir = Path(dist.broadcast(str(self.run_dir)))
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        try:
            if self.run_dir != self.cfg.run_dir:  # config.yaml names the folder it is in
                self.cfg = self.cfg.replace(output_dir=str(self.run_dir))
                self.strategy.cfg = self.strategy.cfg.replace(output_dir=str(self.run_dir))
            return self._fit(resume)
        finally:
            self.strategy.close()
            if lock is not None:
                lock.release()

    def _fit(self, resume: bool) -> TrainResult:
        cfg, strategy, opt = self.cfg, self.strategy, self.optim
        if self.dist.is_main:
            remove_stale_temporaries(self.ckpt_dir)
        seed_everything(cfg.seed)
        strategy.setup(self.device)
        self._step_loss = dist.DataParallel(strategy, self.dist, cfg)  # DDP/FSDP, compile
        total = self._total_steps()
        groups = param_groups(
            strategy.trainable(), opt.weight_decay, opt.lr, opt.lr_scale, opt.layer_decay
        )
        self._optimizer = adamw(groups, opt.lr, opt.betas)
        self._scheduler_obj = self._scheduler(self._optimizer, total)
        state = LoopState(monitor=cfg.selection_metric)
        if resume:
            state = self._resume(state)
        elif self.dist.is_main:
            self._clear_previous_run()
        for name, text in strategy.files().items() if self.dist.is_main else ():
            atomic_write_text(self.run_dir / name, text)

        started = time.perf_counter()
        seconds_before = state.seconds
        self._limit = TimeLimit(getattr(opt, "time_limit", None), state, strategy.steps_per_epoch())
        while not state.finished:
            epoch_start = time.perf_counter()
            out_of_steps = self._train_epoch(state, total, started, seconds_before)
            if self._limit.validate(state):
                self._end_epoch(state, out_of_steps, time.perf_counter() - epoch_start)
            self._limit.stop(state)
            state.seconds = seconds_before + time.perf_counter() - started
            if self.dist.is_main:
                write_logs(self.run_dir, state.history)
            self._save("last", state, {}, full=True)
        return self._finish(state)

    def _train_epoch(
        self, state: LoopState, total: int, started: float, seconds_before: float
    ) -> bool:
        """Run the rest of the current epoch; return whether the step budget ran out."""
        cfg, strategy, opt = self.cfg, self.strategy, self.optim
        strategy.trainable().train()
        bar = tqdm(
            strategy.batches(state.epoch, state.step_in_epoch),
            total=strategy.steps_per_epoch() - state.step_in_epoch,
            desc=f"epoch {state.epoch + 1}/{opt.epochs}",
            disable=not self._show_progress(),
            leave=False,
            dynamic_ncols=True,
        )
        params = [p for g in self._optimizer.param_groups for p in g["params"]]
        losses = LossSum(self.device, state.global_step)
        step_hooks = [c for c in self.callbacks if type(c).on_step_end is not Callback.on_step_end]
        out_of_steps = False
        for batch in bar:
            with autocast(self.device, cfg.precision):
                step = self._step_loss(batch)  # several ranks: DDP, weighted by share
            self._optimizer.zero_grad(set_to_none=True)
            step.loss.backward()  # type: ignore[no-untyped-call]
            strategy.before_step()
            if opt.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, opt.grad_clip)
            self._optimizer.step()
            self._scheduler_obj.step()
            state.global_step += 1
            state.step_in_epoch += 1
            losses.add(step.raw, step.count)
            for cb in step_hooks:  # a float of the step's loss waits for the device
                cb.on_step_end(self, state, float(step.raw.detach()))
            if state.global_step % cfg.log_every == 0:
                losses.flush(state, opt.lr)
                shown = {"loss": f"{state.loss_sum / max(1, state.loss_count):.4f}"}
                if state.best is not None:
                    shown[f"best_val_{cfg.selection_metric}"] = f"{state.best:.4f}"
                bar.set_postfix(shown)
            out_of_steps = state.global_step >= total
            every = cfg.checkpoint_every_steps
            if every is not None and state.global_step % every == 0 and not out_of_steps:
                losses.flush(state, opt.lr)
                state.seconds = seconds_before + time.perf_counter() - started
                self._save("last", state, {}, full=True)
            if out_of_steps or self._limit.reached(state):
                break
        losses.flush(state, opt.lr)  # the epoch's seconds include the GPU's queued work
        bar.close()
        return out_of_steps

    def _end_epoch(self, state: LoopState, out_of_steps: bool, seconds: float) -> None:
        """Validate, log the epoch, keep the best weights, decide whether to stop."""
        cfg, strategy = self.cfg, self.strategy
        epoch = state.epoch + 1
        val = self._step_loss.on_main(lambda: strategy.evaluate("val"))  # sent to all ranks
        extra = strategy.end_epoch(epoch)
        if val is not None and cfg.selection_metric not in val:
            raise ValueError(
                f"monitor={cfg.selection_metric!r} could not be computed on the validation set (got "
                f"{sorted(val)}); auroc needs both classes in it. Choose another monitor or a "
                "larger validation set."
            )
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": state.global_step,
            "lr": scheduled_lr(self._scheduler_obj, self.optim.lr),
            "train_loss": state.loss_sum / max(1, state.loss_count),
            **{f"val_{k}": v for k, v in (val or {}).items()},
            **extra,
            "seconds": seconds,
        }
        state.history.append(row)
        state.epoch, state.step_in_epoch, state.loss_sum, state.loss_count = epoch, 0, 0.0, 0
        value = None if val is None else float(val[cfg.selection_metric])
        loss = None if val is None or "loss" not in val else float(val["loss"])
        if val is None or improves(value, loss, state.best, state.best_loss, self.higher):
            state.best, state.best_loss, state.best_epoch, state.bad_epochs = value, loss, epoch, 0
            self._save("best", state, {"val": val}, full=False)
        else:
            state.bad_epochs += 1
        (logger.info if self.dist.is_main else logger.debug)(
            "epoch %d/%d  train_loss %.4f%s",
            epoch,
            self.optim.epochs,
            row["train_loss"],
            ""
            if value is None
            else f"  val_{cfg.selection_metric} {value:.4f}  (best {state.best:.4f} at epoch "
            f"{state.best_epoch})",
        )
        for cb in self.callbacks:
            cb.on_epoch_end(self, state, row)
        stop_early = (
            cfg.patience is not None
            and state.bad_epochs >= cfg.patience
            and epoch >= cfg.min_epochs
        )
        if stop_early:
            logger.info(
                "early stop: no better val_%s for %d epochs", cfg.selection_metric, state.bad_epochs
            )
        if stop_early or out_of_steps or state.epoch >= self.optim.epochs:
            state.finished = True

    def _finish(self, state: LoopState) -> TrainResult:
        """Load the best weights, evaluate the test split once, write ``results.json``
        (rank 0; the other ranks receive its metrics)."""
        best_val, test = self._step_loss.on_main(self._test)
        result = TrainResult(
            best_val=best_val,
            test=test,
            epochs_run=state.epoch,
            seconds=state.seconds,
            history=list(state.history),
            best_epoch=state.best_epoch,
            run_dir=self.run_dir,
            info=self.strategy.info(),
        )
        summary = {
            "task": self.cfg.task,
            "monitor": self.cfg.monitor,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds": result.seconds,
            "val": best_val,
            "test": test,
            **result.info,
        }
        if self.dist.is_main:
            text = json.dumps(summary, indent=1, default=float) + "\n"
            atomic_write_text(self.run_dir / RESULTS_FILE, text)
        return result

    def _test(self) -> tuple[dict[str, float] | None, dict[str, float] | None]:
        """``(validation metrics of checkpoints/best, test metrics with its weights)``."""
        if not checkpoint_exists(self.ckpt_dir / "best"):
            raise FloatingPointError(
                f"No epoch had a finite val_{self.cfg.selection_metric} (all NaN), so there is no best "
                f"checkpoint in {self.ckpt_dir}. Check the validation set and the monitor."
            )
        best = load_checkpoint(self.ckpt_dir / "best")
        self._step_loss.load_weights(best.weights, str(best.path / WEIGHTS))
        self.strategy.load_extra_state(best.trainer_state.get("strategy", {}))
        val = best.state.get("val")
        best_val = None if val is None else {k: float(v) for k, v in val.items()}
        return best_val, self.strategy.evaluate("test")


__all__ = [
    "CHECKPOINTS",
    "RESULTS_FILE",
    "Callback",
    "LoopState",
    "Strategy",
    "TrainResult",
    "Trainer",
    "module_generators",
    "param_groups",
]
