"""Training and evaluation of context models (:class:`~polymodal.models.context.ContextModel`).

The main :class:`~polymodal.training.trainer.Trainer` is not reused: its batches are one
example per row with one scalar target each, its loss has no notion of padding, and its
``predict`` concatenates (B, K) outputs across batches, whereas a context model's examples
are videos of different lengths with a (V, U) label sequence each.  This module is the
small loop the context model needs, with the Trainer's rules and parts:

    validation = whole videos carved from train (VideoDataset.split_videos)
    for epoch:                       # video order: a permutation seeded by seed + epoch
        for batch of videos:         # AdamW (Trainer's param groups), warmup + cosine
            loss = cross-entropy over real utterances only (padding ignored)
        validate (per-utterance accuracy, macro_f1, loss); keep the best weights
        stop early after `patience` epochs without a better validation monitor
    load the best weights, evaluate the test split once

Metrics are per utterance (padding masked out), computed by
:func:`~polymodal.training.metrics.compute_metrics`, so they are comparable with the
utterance-level baselines.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.context import IGNORE_INDEX, VideoDataset
from polymodal.models.context import ContextModel
from polymodal.training.metrics import HIGHER_IS_BETTER, compute_metrics
from polymodal.training.schedule import build_scheduler
from polymodal.training.seed import seed_everything
from polymodal.training.trainer import param_groups


@dataclass(frozen=True)
class ContextTrainConfig:
    """Optimisation of a context model.

    Args:
        epochs: maximum passes over the training videos.
        batch_videos: videos per batch (all their utterances go through the model).
        lr: AdamW peak learning rate (linear warmup, cosine decay per step).
        weight_decay: AdamW weight decay on matrices (none on biases and norms).
        warmup_ratio: fraction of the steps spent warming up.
        grad_clip: max gradient norm, or ``None``.
        patience: epochs without a better validation ``monitor`` before stopping, or
            ``None`` to run every epoch.
        monitor: ``"accuracy"``, ``"macro_f1"`` or ``"loss"`` on validation.
        seed: seeds parameter-free randomness of the run (video order, dropout).
    """

    epochs: int = 20
    batch_videos: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    grad_clip: float | None = 1.0
    patience: int | None = 5
    monitor: str = "accuracy"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_videos"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ContextTrainConfig.{name} must be an int >= 1, got {v!r}.")
        if not self.lr > 0:
            raise ValueError(f"ContextTrainConfig.lr must be > 0, got {self.lr!r}.")
        if self.patience is not None and self.patience < 1:
            raise ValueError(
                f"ContextTrainConfig.patience must be >= 1 or None, got {self.patience!r}."
            )
        if self.monitor not in ("accuracy", "macro_f1", "loss"):
            raise ValueError(
                f"ContextTrainConfig.monitor must be one of ['accuracy', 'macro_f1', 'loss']; "
                f"got {self.monitor!r}."
            )


@dataclass
class ContextResult:
    """What :func:`fit_context` returns.

    Attributes:
        best_val: validation metrics of the best epoch.
        test: test metrics with the best weights, or ``None`` without a test set.
        best_epoch: the 1-based epoch whose weights the model holds at the end.
        epochs_run: epochs completed.
        seconds: wall time of training and evaluation.
        history: per epoch: ``epoch``, ``train_loss``, ``val_<metric>``.
    """

    best_val: dict[str, float]
    test: dict[str, float] | None
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def context_loss(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy over the real utterances; padding steps (target
    :data:`~polymodal.data.context.IGNORE_INDEX`) add nothing, and the mean is over real
    utterances only.

    Shape:
        - logits: (V, U, K)
        - target: (V, U) long
        - returns: a scalar (``"mean"``, ``"sum"``)
    """
    if logits.shape[:2] != target.shape:
        raise ValueError(
            f"context_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} "
            "must agree on (V, U)."
        )
    return F.cross_entropy(
        logits.float().flatten(0, 1),
        target.long().flatten(),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )


@dataclass
class ContextPredictions:
    """Per-utterance outputs over a :class:`VideoDataset`, video after video (CPU).

    Attributes:
        ids: the N utterance ids.
        logits: (N, K) float32.
        targets: (N,) long, or ``None`` if unlabelled.
    """

    ids: list[str]
    logits: Tensor
    targets: Tensor | None


@torch.no_grad()
def predict_context(
    model: ContextModel,
    dataset: VideoDataset,
    batch_videos: int = 8,
    device: torch.device | str = "cpu",
) -> ContextPredictions:
    """Run ``model`` in eval mode over every video; padding steps are dropped."""
    was_training = model.training
    model.eval()
    ids: list[str] = []
    logits: list[Tensor] = []
    targets: list[Tensor] = []
    try:
        for batch in dataset.batches(batch_videos):
            batch = batch.to(device)
            out = model(batch)
            logits.append(out.logits[out.mask].float().cpu())  # (N_b, K)
            ids += batch.utterances.ids
            if batch.target is not None:
                targets.append(batch.target[out.mask].cpu())
    finally:
        model.train(was_training)
    return ContextPredictions(ids, torch.cat(logits), torch.cat(targets) if targets else None)


def evaluate_context(
    model: ContextModel,
    dataset: VideoDataset,
    batch_videos: int = 8,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Per-utterance ``accuracy``, ``macro_f1``, ``auroc`` (2 classes) and ``loss``."""
    pred = predict_context(model, dataset, batch_videos, device)
    if pred.targets is None:
        raise ValueError(
            f"evaluate_context: data set {dataset.name!r} (split {dataset.split!r}) has no "
            "labels; use predict_context for unlabelled data."
        )
    metrics = compute_metrics("classification", pred.logits, pred.targets)
    metrics["loss"] = float(F.cross_entropy(pred.logits, pred.targets.long()))
    return metrics


def fit_context(
    model: ContextModel,
    train_ds: VideoDataset,
    val_ds: VideoDataset,
    test_ds: VideoDataset | None = None,
    cfg: ContextTrainConfig | None = None,
    device: torch.device | str = "cpu",
) -> ContextResult:
    """Train ``model`` on ``train_ds``, select on ``val_ds``, evaluate ``test_ds`` once.

    The model ends with the best epoch's weights (kept in memory; no files written).
    """
    cfg = cfg if cfg is not None else ContextTrainConfig()
    for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
        if ds is not None and not isinstance(ds, VideoDataset):
            raise TypeError(
                f"fit_context: the {name} set must be a VideoDataset, got {type(ds).__name__}."
            )
    train_videos = set(train_ds.videos)
    shared = sorted(train_videos & set(val_ds.videos))
    if shared:
        raise ValueError(
            f"fit_context: videos {shared[:3]} are in both train and validation; carve "
            "validation by video (VideoDataset.split_videos)."
        )
    started = time.perf_counter()
    seed_everything(cfg.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    total_steps = math.ceil(len(train_ds) / cfg.batch_videos) * cfg.epochs
    scheduler = build_scheduler(optimizer, total_steps, cfg.warmup_ratio)
    higher = HIGHER_IS_BETTER[cfg.monitor]
    best: float | None = None
    best_state: dict[str, Tensor] = copy.deepcopy(model.state_dict())
    best_val: dict[str, float] = {}
    best_epoch, bad_epochs = 0, 0
    history: list[dict[str, float]] = []
    epochs_run = 0
    for epoch in range(cfg.epochs):
        model.train()
        loss_sum, count = 0.0, 0
        for batch in train_ds.batches(cfg.batch_videos, shuffle=True, seed=cfg.seed + epoch):
            batch = batch.to(device)
            if batch.target is None:
                raise ValueError("fit_context: a training batch has no labels.")
            out = model(batch)
            loss = context_loss(out.logits, batch.target)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"The training loss is {loss.item()} in epoch {epoch + 1}; lower lr "
                    f"(now {cfg.lr}) or set grad_clip."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            n = int(batch.mask.sum())
            loss_sum += float(loss.detach()) * n
            count += n
        epochs_run = epoch + 1
        val = evaluate_context(model, val_ds, device=device)
        history.append(
            {"epoch": epoch + 1, "train_loss": loss_sum / max(1, count)}
            | {f"val_{k}": v for k, v in val.items()}
        )
        value = val[cfg.monitor]
        if not math.isnan(value) and (best is None or (value > best if higher else value < best)):
            best, best_val, best_epoch, bad_epochs = value, val, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if cfg.patience is not None and bad_epochs >= cfg.patience:
                break
    model.load_state_dict(best_state)
    test = evaluate_context(model, test_ds, device=device) if test_ds is not None else None
    return ContextResult(
        best_val, test, best_epoch, epochs_run, time.perf_counter() - started, history
    )


__all__ = [
    "ContextPredictions",
    "ContextResult",
    "ContextTrainConfig",
    "context_loss",
    "evaluate_context",
    "fit_context",
    "predict_context",
]
