"""Inference: run a trained model over a data set, score it, and rebuild it from a run.

Nothing here imports :mod:`polymodal.training`: a served or deployed model needs only the
checkpoint folder (its weights, the run's ``config.yaml`` and the data's ``schema.json``).

* :func:`predict` / :func:`evaluate`: a :class:`~polymodal.models.MultimodalModel` over a
  data set, in order, in eval mode; raw outputs, or metrics plus ``loss``.
* :func:`predict_videos` / :func:`evaluate_videos`: the same for a context model over a
  :class:`~polymodal.data.context.VideoDataset` (one prediction per utterance).
* :func:`load_trained`: a run folder (or checkpoint folder) -> the model with its weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from polymodal.checkpoint import (
    WEIGHTS,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_weights,
    resolve_checkpoint,
)
from polymodal.checkpoint_files import damaged_advice
from polymodal.config import parse_yaml_mapping
from polymodal.data.context import VideoBatch, VideoDataset
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.modality import Schema
from polymodal.data.sample import Batch, ModalityBatch
from polymodal.device import autocast
from polymodal.losses.supervised import task_loss
from polymodal.metrics import compute_metrics, one_class_warning
from polymodal.outputs import model_logits
from polymodal.progress import progress

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
SCHEMA_FILE = "schema.json"


def data_loader(
    dataset: MultimodalDataset,
    batch_size: int,
    sampler: Sampler[int] | None = None,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    batch_sampler: Sampler[list[int]] | None = None,
) -> DataLoader[Any]:
    """A :class:`DataLoader` of collated batches in ``sampler``'s order (default: in order),
    or the batches ``batch_sampler`` yields (then ``batch_size`` and ``sampler`` are unused).

    Its generator is explicit: otherwise DataLoader draws its worker base seed from the
    global torch RNG at every iteration, shifting dropout between runs and resumptions.
    ``persistent_workers`` keeps the ``num_workers`` processes between iterations (the
    data sets draw nothing at random while decoding, so their seeds do not matter).
    """
    common: dict[str, Any] = {
        "num_workers": num_workers,
        "collate_fn": dataset.collator(),
        "generator": torch.Generator().manual_seed(seed),
        "pin_memory": pin_memory,
        "persistent_workers": persistent_workers and num_workers > 0,
    }
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, **common)


class GroupEncoder(Protocol):
    """An encoder that standardises each example by its group's statistics."""

    def to(self, device: torch.device) -> Any: ...
    def known_ids(self) -> set[str]: ...
    def moments(self, batch: ModalityBatch) -> tuple[Tensor, Tensor, Tensor]: ...
    def set_group_stats(
        self, group_of: dict[str, str], stats: dict[str, tuple[Tensor, Tensor]]
    ) -> None: ...


def _group_encoders(model: nn.Module) -> list[tuple[str, GroupEncoder]]:
    """(modality, encoder) of every encoder in ``model`` that needs group statistics."""
    out: list[tuple[str, GroupEncoder]] = []
    for module in model.modules():
        encoders = getattr(module, "encoders", None)
        if isinstance(encoders, nn.ModuleDict):
            out += [
                (n, cast(GroupEncoder, e))
                for n, e in encoders.items()
                if getattr(e, "uses_groups", False)
            ]
    return out


@torch.no_grad()
def calibrate_groups(
    model: nn.Module,
    data: MultimodalDataset | Iterable[tuple[Batch, Sequence[str]]],
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    eps: float = 1e-5,
) -> int:
    """Set each group's statistics in the encoders of ``model`` that standardise by group.

    Such an encoder (``uses_groups``, e.g. ``audio_ge2e(speaker_norm=True)``) maps each
    example to its group (speaker) and standardises its frozen features by the mean and
    standard deviation of all the group's frames.  This reads every example of ``data``
    once, without labels; a no-op (returning 0) for models without such encoders, and for
    a data set whose ids are all calibrated already.

    Args:
        model: a model holding per-modality ``encoders`` (possibly wrapped).
        data: a data set (groups from its ``groups()``), or (batch, groups) pairs.
        batch_size, device: how the data set is read.
        eps: floor of the standard deviations.

    Returns:
        The number of groups whose statistics were set.
    """
    encoders = _group_encoders(model)
    if not encoders:
        return 0
    device = torch.device(device)
    if isinstance(data, MultimodalDataset):
        ids = data.ids()
        known = set.intersection(*(e.known_ids() for _, e in encoders))
        if all(i in known for i in ids):
            return 0
        groups = data.groups()
        by_id = dict(zip(ids, groups, strict=True))
        loader = data_loader(data, batch_size)
        desc = f"calibrating group statistics on {data.name} ({data.split})"
        pairs: Iterable[tuple[Batch, Sequence[str]]] = (
            (b, [by_id[i] for i in b.ids]) for b in progress(loader, desc=desc, unit="batches")
        )
    else:
        pairs = data
    sums: dict[str, dict[str, list[Tensor]]] = {n: {} for n, _ in encoders}
    group_of: dict[str, str] = {}
    for batch, batch_groups in pairs:
        if len(batch_groups) != len(batch.ids):
            raise ValueError(
                f"calibrate_groups: a batch of {len(batch.ids)} examples came with "
                f"{len(batch_groups)} groups; pass one group per example."
            )
        group_of.update(zip(batch.ids, (str(g) for g in batch_groups), strict=True))
        batch = batch.to(device)
        for name, encoder in encoders:
            encoder.to(device)
            n, s, ss = encoder.moments(batch[name])  # (B,), (B, D), (B, D)
            for g, row in zip(batch_groups, range(len(batch_groups)), strict=True):
                acc = sums[name].setdefault(str(g), [])
                item = (n[row].cpu(), s[row].cpu(), ss[row].cpu())
                if acc:
                    acc[:] = [a + b for a, b in zip(acc, item, strict=True)]
                else:
                    acc.extend(item)
    count = 0
    for name, encoder in encoders:
        stats = {}
        for g, (n, s, ss) in sums[name].items():
            if float(n) == 0:
                continue  # no example of the group has the modality
            mean = s / n
            var = (ss / n - mean.square()).clamp_min(0.0)
            stats[g] = (mean, var.sqrt().clamp_min(eps))
        encoder.set_group_stats(group_of, stats)
        count = max(count, len(stats))
    return count


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
    transform: Callable[[Batch], Batch] | None = None,
) -> Predictions:
    """Run ``model`` in eval mode over ``dataset`` in order; returns the raw outputs.

    The model is moved to ``device`` (in place, as ``model.to`` does) and its train/eval
    mode is restored afterwards.  ``transform`` maps each collated CPU batch before the
    model sees it (a perturbation, a dropped modality).
    """
    calibrate_groups(model, dataset, batch_size, device)
    loader = data_loader(dataset, batch_size, num_workers=num_workers)
    batches = progress(loader, desc=f"predicting {dataset.name} ({dataset.split})", unit="batches")
    pred = predict_batches(model, batches, device, precision, transform)
    if pred is None:
        raise ValueError(f"Data set {dataset.name!r} (split {dataset.split!r}) is empty.")
    return pred


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    transform: Callable[[Batch], Batch] | None = None,
) -> Predictions | None:
    """:func:`predict` over already collated ``batches`` (e.g. a cached split evaluated
    under many perturbations); ``None`` when there are none."""
    device = torch.device(device)
    model.to(device)

    def rows(batch: Batch) -> tuple[list[str], Tensor, Tensor | None]:
        if transform is not None:
            batch = transform(batch)
        batch = batch.to(device)
        with autocast(device, precision):
            logits = model_logits(model(batch))
        return batch.ids, logits.reshape(logits.shape[0], -1), batch.target

    return _collect(model, batches, rows)


def _collect(
    model: nn.Module,
    batches: Iterable[Any],
    rows: Callable[[Any], tuple[list[str], Tensor, Tensor | None]],
) -> Predictions | None:
    """``rows(batch)`` -> (ids, (n, K) outputs, targets) over ``batches`` with ``model`` in
    eval mode (its mode restored afterwards), gathered on the CPU; ``None`` if empty."""
    was_training = model.training
    model.eval()
    ids: list[str] = []
    outs: list[Tensor] = []
    targets: list[Tensor] = []
    try:
        for batch in batches:
            batch_ids, out, target = rows(batch)
            ids += batch_ids
            outs.append(out.float().cpu())
            if target is not None:
                targets.append(target.cpu())
    finally:
        model.train(was_training)
    if not outs:
        return None
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
    transform: Callable[[Batch], Batch] | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on ``dataset`` (see :func:`~polymodal.metrics.compute_metrics`)
    plus ``loss``; ``task`` defaults to ``model.task`` or the data set's.  ``transform``
    maps each collated batch first (see :func:`predict`)."""
    task = task or getattr(model, "task", None) or dataset.schema.target.task
    pred = predict(model, dataset, device, batch_size, precision, num_workers, transform)
    return prediction_metrics(pred, dataset, task, regression_loss)


def prediction_metrics(
    pred: Predictions, dataset: MultimodalDataset, task: str, regression_loss: str = "mse"
) -> dict[str, float]:
    """:func:`evaluate`'s metrics of predictions ``pred`` already made on ``dataset``."""
    if pred.targets is None:
        raise ValueError(
            f"Data set {dataset.name!r} (split {dataset.split!r}) has no labels; evaluate needs "
            "a labelled split (use predict for unlabelled data)."
        )
    out = pred.outputs
    if task == "regression":
        out = out[:, 0]
    metrics = compute_metrics(task, out, pred.targets)
    if task == "classification":
        warning = one_class_warning(out, pred.targets, dataset.schema.target.class_names)
        if warning:
            logger.warning("%s (%s, split %r)", warning, dataset.name, dataset.split)
    metrics["loss"] = float(task_loss(task, pred.outputs, pred.targets, regression_loss))
    return metrics


def ensemble_predictions(preds: Sequence[Predictions], task: str) -> Predictions:
    """One prediction from several models' predictions on the same examples (a seed ensemble).

    Classification averages the class probabilities (the outputs returned are the log of the
    mean, so softmax/argmax/cross-entropy read them as logits); multilabel averages each
    label's probability (returned as its logit); regression averages the outputs.

    Raises:
        ValueError: fewer than one prediction, or predictions on different examples (ids in
            another order, or other targets).
    """
    if not preds:
        raise ValueError("ensemble_predictions: got no predictions; pass at least one.")
    first = preds[0]
    for k, p in enumerate(preds[1:], start=1):
        if p.ids != first.ids or p.outputs.shape != first.outputs.shape:
            raise ValueError(
                f"ensemble_predictions: prediction {k} is on other examples than prediction 0 "
                f"({len(p.ids)} vs {len(first.ids)} ids, outputs {tuple(p.outputs.shape)} vs "
                f"{tuple(first.outputs.shape)}); ensemble models evaluated on the same split."
            )
        if (p.targets is None) != (first.targets is None) or (
            p.targets is not None and not torch.equal(p.targets, first.targets)  # type: ignore[arg-type]
        ):
            raise ValueError(
                f"ensemble_predictions: prediction {k} has other targets than prediction 0 for "
                "the same ids; were the models trained on the same labels?"
            )
    outs = torch.stack([p.outputs.float() for p in preds])  # (R, N, K)
    if task == "classification":
        mean = outs.softmax(dim=-1).mean(dim=0).clamp_min(torch.finfo(torch.float32).tiny)
        out = mean.log()
    elif task == "multilabel":
        out = torch.logit(outs.sigmoid().mean(dim=0), eps=1e-7)
    else:
        out = outs.mean(dim=0)
    return Predictions(list(first.ids), out, first.targets)


@torch.no_grad()
def predict_videos(
    model: nn.Module,
    dataset: VideoDataset,
    batch_videos: int = 8,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    transform: Callable[[Batch], Batch] | None = None,
) -> Predictions:
    """Run a context model in eval mode over every video; one row per real utterance.

    ``transform`` maps each batch's utterances (the collated CPU :class:`Batch`) before the
    model sees them, e.g. :func:`polymodal.robustness.drop_modalities` to evaluate without
    a modality.

    Returns:
        :class:`Predictions` with the N utterance ids, (N, K) logits, (N,) targets.
    """
    device = torch.device(device)

    def rows(batch: VideoBatch) -> tuple[list[str], Tensor, Tensor | None]:
        if transform is not None:
            batch = replace(batch, utterances=transform(batch.utterances))
        batch = batch.to(device)
        with autocast(device, precision):
            out = model(batch)
        target = None if batch.target is None else batch.target[out.mask]
        return batch.utterances.ids, out.logits[out.mask], target  # (N_b, K): real steps

    batches = progress(
        dataset.batches(batch_videos),
        total=-(-len(dataset) // batch_videos),
        desc=f"predicting {dataset.name} ({dataset.split})",
        unit="batches of videos",
    )
    pred = _collect(model, batches, rows)
    if pred is None:
        raise ValueError(f"Data set {dataset.name!r} (split {dataset.split!r}) has no videos.")
    return pred


def evaluate_videos(
    model: nn.Module,
    dataset: VideoDataset,
    batch_videos: int = 8,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    transform: Callable[[Batch], Batch] | None = None,
) -> dict[str, float]:
    """Per-utterance ``accuracy``, ``macro_f1``, ``auroc`` (2 classes) and ``loss``
    (``transform``: as :func:`predict_videos`)."""
    pred = predict_videos(model, dataset, batch_videos, device, precision, transform)
    if pred.targets is None:
        raise ValueError(
            f"Data set {dataset.name!r} (split {dataset.split!r}) has no labels; use "
            "predict_videos for unlabelled data."
        )
    metrics = compute_metrics("classification", pred.outputs, pred.targets)
    metrics["loss"] = float(F.cross_entropy(pred.outputs, pred.targets.long()))
    return metrics


# --------------------------------------------------------------------------- trained runs


@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint folder.

    Attributes:
        model: the model with the checkpoint's weights, in eval mode, on CPU.
        config: the run's config as plain data (``config.yaml``).
        schema: the schema of the data set it was trained on.
        path: the checkpoint folder.
        state: the checkpoint's JSON state (epoch, step, validation metrics).
    """

    model: nn.Module
    config: dict[str, Any]
    schema: Schema
    path: Path
    state: dict[str, Any]

    @property
    def task(self) -> str:
        """The run's training task (``supervised``, ``context``)."""
        return str(self.config.get("task", "supervised"))

    @property
    def precision(self) -> str:
        return str(self.config.get("precision", "fp32"))

    @property
    def batch_size(self) -> int:
        return int(self.config.get("data", {}).get("batch_size", 32))


def build_run_model(config: dict[str, Any], schema: Schema) -> nn.Module:
    """The (untrained) model a run's plain config describes, for data with ``schema``."""
    from polymodal.models.build import build_model
    from polymodal.models.config import ModelConfig
    from polymodal.models.context import ContextConfig, ContextModel

    task = config.get("task", "supervised")
    if task not in ("supervised", "context"):
        raise ValueError(
            f"The run's task is {task!r}; only supervised and context runs are rebuilt here. "
            "Load a contrastive run with polymodal.joint.load_joint_checkpoint."
        )
    model = build_model(
        ModelConfig.from_dict(config["model"], "model"), schema, seed=int(config.get("seed", 0))
    )
    if task == "context":
        return ContextModel(model, **ContextConfig.from_dict(config.get("context", {})).to_dict())
    return model


def load_trained(path: str | Path, which: str = "best") -> TrainedModel:
    """Rebuild the model saved in a checkpoint (or run) folder from its own config and
    schema, and load its weights; weights of another model fail naming the keys/shapes."""
    ckpt = load_checkpoint(resolve_checkpoint(path, which), with_trainer_state=False)
    config = _run_config(ckpt)
    schema = _run_schema(ckpt)
    try:
        model = build_run_model(config, schema)
    except (KeyError, TypeError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"{ckpt.path / CONFIG_FILE}: {msg}") from None
    load_weights(model, ckpt.weights, str(ckpt.path / WEIGHTS))
    if _balance_method(config) == "mla":
        # MLA predicts with each modality alone, fused as it was selected
        model = _mla_fusion(model, config, ckpt)
    model.eval()
    return TrainedModel(model, config, schema, ckpt.path, ckpt.state)


def _run_config(ckpt: Checkpoint) -> dict[str, Any]:
    """The run's ``config.yaml``: a mapping with a ``model`` mapping, named when not."""
    file = ckpt.path / CONFIG_FILE
    try:
        config = parse_yaml_mapping(ckpt.text(CONFIG_FILE), str(file))
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(f"{exc} {damaged_advice(ckpt.path)}") from None
    for key in ("model", "data", "optim"):
        if (key == "model" or key in config) and not isinstance(config.get(key), dict):
            raise CheckpointError(
                f"{file}: {key!r} must be a mapping, got {config.get(key)!r}; the file was "
                f"modified or is not a polymodal run config. {damaged_advice(ckpt.path)}"
            )
    return config


def _run_schema(ckpt: Checkpoint) -> Schema:
    """The data's ``schema.json``, named when it is not a valid schema."""
    data = ckpt.json(SCHEMA_FILE)
    try:
        return Schema.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise CheckpointError(
            f"{ckpt.path / SCHEMA_FILE} is not a valid data schema: {msg} "
            + damaged_advice(ckpt.path)
        ) from None


def _mla_fusion(model: nn.Module, config: dict[str, Any], ckpt: Checkpoint) -> nn.Module:
    """An MLA run's model in its test-time fusion, with the temperatures its checkpoint
    carries when that fusion is ``calibrated``."""
    from polymodal.models.entropy import EntropyFusion

    balance = (config.get("optim") or {}).get("balance")
    combine = str(balance.get("mla_fusion", "entropy")) if isinstance(balance, dict) else "entropy"
    names = sorted(model.encoders)  # type: ignore[arg-type]
    fusion = EntropyFusion(model, names, combine)
    if fusion.calibrate:
        temperatures = ckpt.state.get("modality_temperatures")
        if not isinstance(temperatures, dict) or sorted(temperatures) != names:
            raise CheckpointError(
                f"{ckpt.path}: an MLA run with mla_fusion=calibrated keeps its temperatures "
                f"(one per modality: {names}) in the checkpoint's state, but found "
                f"{temperatures!r}. {damaged_advice(ckpt.path)}"
            )
        log_inv = [-math.log(float(temperatures[n])) for n in names]
        fusion.log_inv_temperature.copy_(torch.tensor(log_inv))
    return fusion


def _balance_method(config: dict[str, Any]) -> str:
    """The run's ``optim.balance`` method (``none`` when absent; a bare name or a mapping)."""
    balance = (config.get("optim") or {}).get("balance", "none")
    if isinstance(balance, dict):
        return str(balance.get("method", "none"))
    return str(balance)


__all__ = [
    "Predictions",
    "TrainedModel",
    "build_run_model",
    "calibrate_groups",
    "data_loader",
    "ensemble_predictions",
    "evaluate",
    "evaluate_videos",
    "load_trained",
    "model_logits",
    "predict",
    "predict_batches",
    "predict_videos",
    "prediction_metrics",
    "resolve_checkpoint",
]
