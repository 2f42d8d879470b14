"""The contrastive task: train a joint embedding space on paired features, on the one loop.

A ``task: contrastive`` run (:class:`JointTrainConfig`, ``configs/flickr8k.yaml``)::

    task: contrastive
    model:                      # polymodal.joint.model.JointConfig; modalities by name
      dim: 512
      anchor: image
      modalities: {image: {spec: {kind: image}, encoder: {name: efficientnet_lite0}}, ...}
    pairs:                      # PairSetConfig by name: (anchor, other) pairs of a data set
      flickr8k: {dataset: flickr8k, other: text, val_split: val, test_split: test}
    optim: {epochs: 20, batch_size: 1024, lr: 2.0e-3}     # ContrastiveOptim

With frozen encoders the pooled features never change, so :meth:`ContrastiveStrategy.setup`
computes them once (the feature cache, :mod:`polymodal.joint.features`) and only the
projections and the losses' temperatures train: an epoch over Flickr8k's 6,000 images
takes seconds on a CPU.  An encoder with ``trainable_layers`` (``minilm``,
``efficientnet_lite0``) fine-tunes its last blocks the same way: the outputs of its frozen
stem are cached once, and each step runs only the trained blocks on them.

Each step draws one batch from every pair set and sums their losses (ImageBind-style
binding: several (anchor, other) pair sets, one shared space; pair sets of the same two
modalities share one loss and its learned temperature).  Several rows of ``other``
may belong to one anchor row (Flickr8k's five captions per image): each epoch pairs every
anchor row with one of its rows drawn at random, so every caption serves as a positive
over the epochs while no batch holds two positives of one image.  With
``optim.all_positives`` each step instead takes every row of its anchors and optimises
:func:`~polymodal.losses.multi_positive_clip_loss`.  Early stopping reads the validation
R@1 averaged over both directions and every pair set (``r1_mean``); the test splits are
evaluated once, with the best state.  ``checkpoints/best`` is a joint checkpoint
(:mod:`polymodal.joint.checkpoint`) that ``polymodal embed`` and ``search`` take.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from polymodal.config import param
from polymodal.errors import did_you_mean
from polymodal.joint.checkpoint import (
    joint_files,
    joint_state,
    joint_weights,
    load_joint_weights,
)
from polymodal.joint.model import JointConfig, JointEmbeddingModel
from polymodal.joint.pairs import (
    PairedFeatures,
    PairSetConfig,
    check_pairs,
    embed_rows,
    evaluate_pairs,
)
from polymodal.losses.contrastive import (
    MAX_LOGIT_SCALE,
    ClipLoss,
    MaxViolationLoss,
    SigLipLoss,
    multi_positive_clip_loss,
)
from polymodal.training.config import DistributedConfig, OptimConfig, RunConfig
from polymodal.training.distributed import DistInfo, barrier, current, shard
from polymodal.training.loop import CONFIG_FILE, Strategy
from polymodal.training.tasks import register_task

logger = logging.getLogger("polymodal.training")


@dataclass(frozen=True, kw_only=True)
class ContrastiveOptim(OptimConfig):
    """:class:`~polymodal.training.config.OptimConfig` plus the contrastive loss's settings.

    Args:
        batch_size: pairs per step and pair set, over all processes of a ``torchrun`` run
            (each of N takes ``batch_size / N``).
        loss: ``"clip"`` (symmetric InfoNCE), ``"siglip"``, or ``"max_violation"`` (VSE++'s
            hinge on each pair's hardest negative in the batch, Faghri et al. 2018; no
            temperature).
        temperature: initial temperature (CLIP: the logit scale starts at ``1 / t``).
        learn_temperature: train the temperature with the projections.
        margin: ``max_violation``: the hinge's margin on the cosine scale (VSE++: 0.2).
        all_positives: each step takes every other row of the batch's anchors (all five
            captions of each image) and uses the multi-positive form of the loss (``clip``:
            a multi-positive InfoNCE; ``max_violation``: no row of the same anchor is a
            negative); otherwise one other row per anchor, drawn anew each epoch.
    """

    moved: ClassVar[dict[str, str]] = {
        "patience": "early stopping is the run's top-level 'patience' (every task has it)",
        "seed": "the run's top-level 'seed' seeds the pairing and the batch order too",
    }

    epochs: int = param(30, ge=1)
    warmup_steps: int | None = param(50, ge=0)
    grad_clip: float | None = param(None, gt=0)
    batch_size: int = param(256, ge=2)
    loss: Literal["clip", "siglip", "max_violation"] = "clip"
    temperature: float = param(0.05, gt=0)
    learn_temperature: bool = True
    margin: float = param(0.2, gt=0)
    all_positives: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.all_positives and self.loss == "siglip":
            raise ValueError(
                "optim.all_positives=true needs optim.loss=clip (the multi-positive InfoNCE) "
                f"or max_violation, got loss={self.loss!r}."
            )


@dataclass(frozen=True, kw_only=True)
class JointTrainConfig(RunConfig):
    """A joint embedding run (``task: contrastive``).

    Args:
        model: the joint space (:class:`~polymodal.joint.model.JointConfig`).
        pairs: the pair sets by name (at least one); each trains (anchor, other).
        optim: :class:`ContrastiveOptim`.
        monitor: ``r1_mean`` (validation R@1, both directions, every pair set) or any
            ``<a>2<b>_r@K`` metric of a validated pair set.
        feature_cache: root of the cached encoder features (``None``: the user cache,
            ``~/.cache/polymodal/features``).
    """

    example = "See configs/flickr8k.yaml."

    task: Literal["contrastive"] = "contrastive"
    model: JointConfig
    pairs: dict[str, PairSetConfig]
    optim: ContrastiveOptim = field(default_factory=ContrastiveOptim)
    monitor: str = "r1_mean"
    feature_cache: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.pairs:
            raise ValueError(
                "pairs: a joint run needs at least one pair set, e.g. pairs: {flickr8k: "
                "{dataset: flickr8k, other: text}}."
            )
        names = list(self.model.names)
        for key, p in self.pairs.items():
            anchor = self.anchor_of(key)
            for role, m in (("anchor", anchor), ("other", p.other)):
                if m not in names:
                    raise ValueError(
                        f"pairs.{key}.{role} is {m!r}, which is not a modality of the model "
                        f"{names}." + did_you_mean(m, names)
                    )
            if anchor == p.other:
                raise ValueError(
                    f"pairs.{key}: anchor and other are both {anchor!r}; a pair set relates "
                    "two different modalities."
                )

    def anchor_of(self, pair: str) -> str:
        """The anchor modality of pair set ``pair`` (the model's anchor unless set)."""
        anchor = self.pairs[pair].anchor
        return str(self.model.anchor) if anchor is None else anchor


def build_loss(
    optim: ContrastiveOptim,
    distributed: DistributedConfig | None = None,
    info: DistInfo | None = None,
) -> nn.Module:
    """The loss module of one pair set, its logit scale at ``log(1 / temperature)``.

    Under ``torchrun`` (``info`` of several ranks) the loss gathers every rank's embeddings
    as negatives, with ``distributed.local_loss`` and ``distributed.gather_with_grad``
    (open_clip's recommended setting by default: both on).
    """
    init = math.log(1.0 / optim.temperature)
    info = DistInfo() if info is None else info
    loss: nn.Module
    if optim.loss == "clip":
        d = DistributedConfig() if distributed is None else distributed
        loss = ClipLoss(
            info.rank,
            info.world_size,
            gather_with_grad=d.gather_with_grad,
            local_loss=d.local_loss,
            init_logit_scale=init,
            learn_logit_scale=optim.learn_temperature,
        )
    elif optim.loss == "max_violation":
        loss = MaxViolationLoss(info.rank, info.world_size, margin=optim.margin)
    else:
        loss = SigLipLoss(info.rank, info.world_size, init_logit_scale=init)
        loss.logit_scale.requires_grad_(optim.learn_temperature)
    return loss


def _temperature(loss: nn.Module) -> float | None:
    scale = getattr(loss, "logit_scale", None)  # max_violation has no temperature
    return None if scale is None else math.exp(-float(scale.detach()))


def _batches_with_negatives(n: int, batch_size: int) -> int:
    """Batches of ``n`` rows that have >= 2 rows (a lone pair has no negative)."""
    return n // batch_size + (1 if n % batch_size >= 2 else 0)


# One step of one pair set: (set index, anchor rows (B,), other rows (B,)).
Step = list[tuple[int, Tensor, Tensor]]


class ContrastiveStrategy(Strategy):
    """Trains a joint model's projections on paired features of one or more pair sets.

    Args:
        cfg: the run's :class:`JointTrainConfig`.
        model: the joint model; its projections, the losses' temperatures and the trained
            blocks of encoders with ``trainable_layers`` train.
        train, val, test: pair set name -> :class:`PairedFeatures`; ``None`` computes them
            from ``cfg.pairs`` through the feature cache in :meth:`setup`.
    """

    cfg: JointTrainConfig
    model: JointEmbeddingModel

    def __init__(
        self,
        cfg: JointTrainConfig,
        model: JointEmbeddingModel,
        train: dict[str, PairedFeatures] | None = None,
        val: dict[str, PairedFeatures] | None = None,
        test: dict[str, PairedFeatures] | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.data: dict[str, dict[str, PairedFeatures]] | None = None
        if train is not None:
            self.data = {"train": dict(train), "val": dict(val or {}), "test": dict(test or {})}
            self._check_data()
        # One loss (one temperature) per pair of modalities: pair sets relating the same two
        # modalities (Flickr8k and MNIST captions, both image-text) share it, as ImageBind
        # keeps one temperature per modality pair.
        pairs = sorted({f"{cfg.anchor_of(n)}-{p.other}" for n, p in cfg.pairs.items()})
        self.rank = current()
        self.losses = nn.ModuleDict(
            {pair: build_loss(cfg.optim, cfg.distributed, self.rank) for pair in pairs}
        )
        self.feature_seconds = 0.0

    def _check_data(self) -> None:
        assert self.data is not None
        for role, sets in self.data.items():
            if sets:
                check_pairs(self.model, list(sets.values()), role)
            unknown = sorted(set(sets) - set(self.cfg.pairs))
            if unknown:
                raise ValueError(
                    f"{role} pair sets {unknown} are not in the config's pairs "
                    f"{sorted(self.cfg.pairs)}."
                )
        if not self.data["train"]:
            raise ValueError("A contrastive run needs at least one training pair set.")
        for name, p in self.data["train"].items():
            if len(p.anchor_features) < 2:
                raise ValueError(
                    f"Pair set {name!r} has {len(p.anchor_features)} training anchor row; "
                    "a contrastive loss needs at least 2 (negatives)."
                )
        self._tables = {n: p.groups() for n, p in self.data["train"].items()}

    # ---------------------------------------------------------------- setup

    def setup(self, device: torch.device) -> None:
        if self.data is None and not self.rank.is_main:
            barrier()  # rank 0 fills the feature cache first; the others then read it
        if self.data is None:
            from polymodal.joint.pairs import pair_features

            start = time.perf_counter()
            data: dict[str, dict[str, PairedFeatures]] = {"train": {}, "val": {}, "test": {}}
            for name, pset in self.cfg.pairs.items():
                for role, split in pset.splits().items():
                    if split is not None:
                        data[role][name] = pair_features(
                            self.model,
                            pset,
                            self.cfg.anchor_of(name),
                            split,
                            cache_root=self.cfg.feature_cache,
                            progress=logger.info,
                        )
            self.feature_seconds = time.perf_counter() - start
            logger.info("features ready in %.1fs", self.feature_seconds)
            self.data = data
            self._check_data()
            if self.rank.is_main:
                barrier()
        assert self.data is not None
        self.device = device
        self.model.to(device)
        self.losses.to(device)
        self.data = {
            role: {n: p.to(device) for n, p in sets.items()} for role, sets in self.data.items()
        }
        self._device_tables = {
            n: (table.to(device), bool((table >= 0).all()))
            for n, (table, _) in self._tables.items()
        }
        uneven = sorted(n for n, (_, full) in self._device_tables.items() if not full)
        if self.rank.is_distributed and self.cfg.optim.all_positives and uneven:
            raise ValueError(
                f"optim.all_positives=true under torchrun needs every anchor of a pair set to "
                f"have the same number of rows (Flickr8k: 5 captions each); {uneven} "
                "do not, so the ranks' shares would differ in size. Train in one process, or "
                "with optim.all_positives=false."
            )

    def trainable(self) -> nn.Module:
        projections: nn.Module = self.model.projections
        tuned = {
            m: self.model.encoders[m] for m in self.model.modalities if self.model.tunes_stem(m)
        }
        modules = {"projections": projections, "losses": self.losses}
        if tuned:  # the encoders' trained blocks (their stems stay frozen, in eval mode)
            modules["encoders"] = nn.ModuleDict(tuned)
        return nn.ModuleDict(modules)

    # ---------------------------------------------------------------- steps

    def _train_sets(self) -> dict[str, PairedFeatures]:
        assert self.data is not None, "call setup() first"
        return self.data["train"]

    def steps_per_epoch(self) -> int:
        bs = self.cfg.optim.batch_size
        return max(
            _batches_with_negatives(len(p.anchor_features), bs) for p in self._train_sets().values()
        )

    def _plan(self, epoch: int) -> list[list[tuple[Tensor, Tensor]]]:
        """Each training set's batches of ``epoch`` (>= 2 rows each), seeded by seed+epoch."""
        gen = torch.Generator().manual_seed(self.cfg.seed + epoch)
        bs = self.cfg.optim.batch_size
        plans = []
        for name, p in self._train_sets().items():
            table, counts = self._tables[name]
            na = len(p.anchor_features)
            pick = (torch.rand(na, generator=gen) * counts).long()  # (Na,) one positive each
            other_rows = table[torch.arange(na), pick]  # (Na,)
            perm = torch.randperm(na, generator=gen)
            # one copy per epoch: a step indexes device tensors (a copy from pageable host
            # memory would make the host wait for the device's queued work every step)
            perm_d, other_d = perm.to(self.device), other_rows[perm].to(self.device)
            plans.append(
                [
                    (perm_d[s : s + bs], other_d[s : s + bs])
                    for s in range(0, na, bs)
                    if min(bs, na - s) >= 2
                ]
            )
        return plans

    def batches(self, epoch: int, start: int) -> Iterator[Step]:
        plans = self._plan(epoch)
        for step in range(start, self.steps_per_epoch()):
            # under torchrun, this rank's share of every set's global batch
            yield [
                (k, shard(a, self.rank), shard(o, self.rank))
                for k, (a, o) in enumerate(plan[step % len(plan)] for plan in plans)
            ]

    def loss(self, batch: Step) -> tuple[Tensor, int]:
        sets = list(self._train_sets().items())
        total: Tensor | None = None
        count = 0
        for k, a_rows, o_rows in batch:
            name, p = sets[k]
            loss_fn: nn.Module = self.losses[p.name]
            a_rows, o_rows = a_rows.to(self.device), o_rows.to(self.device)
            za = embed_rows(self.model, p.anchor, p.anchor_features, a_rows)  # (B, D)
            if self.cfg.optim.all_positives:
                table, full = self._device_tables[name]
                rows = table[a_rows]  # (B, G), -1 padded
                owner = torch.arange(a_rows.numel(), device=self.device)[:, None].expand_as(rows)
                if full:  # every anchor has G others (Flickr8k: 5 captions): no mask to read
                    rows, owner = rows.reshape(-1), owner.reshape(-1)  # (M,)
                else:
                    valid = rows >= 0
                    rows, owner = rows[valid], owner[valid]  # (M,)
                zo = embed_rows(self.model, p.other, p.other_features, rows)  # (M, D)
                if isinstance(loss_fn, MaxViolationLoss):
                    value = loss_fn(za, zo, owner)
                else:
                    scale = loss_fn.logit_scale
                    assert isinstance(scale, Tensor) and isinstance(loss_fn, ClipLoss)
                    value = multi_positive_clip_loss(
                        za,
                        zo,
                        owner,
                        scale.clamp(max=MAX_LOGIT_SCALE),
                        ctx=loss_fn.ctx,
                        gather_with_grad=loss_fn.gather_with_grad,
                        local_loss=loss_fn.local_loss,
                    )
            else:
                zo = embed_rows(self.model, p.other, p.other_features, o_rows)  # (B, D)
                value = loss_fn(za, zo)
            total = value if total is None else total + value
            count += int(a_rows.numel())
        assert total is not None  # every set has a batch in every step
        return total, count

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, split: str) -> dict[str, float] | None:
        assert self.data is not None
        sets = self.data[split]
        if not sets:
            return None
        if split == "val":
            return evaluate_pairs(self.model, list(sets.values()))
        many = len(self.cfg.pairs) > 1
        out: dict[str, float] = {}
        for name, p in sets.items():
            for k, v in evaluate_pairs(self.model, [p]).items():
                out[f"{name}/{k}" if many else k] = v
        return out

    def higher_is_better(self, monitor: str) -> bool:
        return monitor != "loss"

    # ---------------------------------------------------------------- checkpoints

    def weights(self) -> dict[str, Tensor]:
        return joint_weights(self.model)

    def load_weights(self, weights: dict[str, Tensor], source: str) -> None:
        load_joint_weights(self.model, weights, source)

    def extra_state(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in self.losses.state_dict().items()}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if state:
            self.losses.load_state_dict(state)

    def files(self) -> dict[str, str]:
        return {CONFIG_FILE: self.cfg.to_yaml(), **joint_files(self.model)}

    def checkpoint_state(self) -> dict[str, Any]:
        return joint_state(self.model)

    def info(self) -> dict[str, Any]:
        return {
            "feature_seconds": self.feature_seconds,
            "temperatures": {
                name: t for name, fn in self.losses.items() if (t := _temperature(fn)) is not None
            },
        }


@register_task("contrastive", "learn a joint embedding space from paired data", JointTrainConfig)
def build_contrastive(cfg: JointTrainConfig) -> ContrastiveStrategy:
    """The joint model of ``cfg`` (projections seeded by ``cfg.seed``); features in setup."""
    torch.manual_seed(cfg.seed)
    return ContrastiveStrategy(cfg, JointEmbeddingModel(cfg.model))


def paired(sets: Sequence[PairedFeatures]) -> dict[str, PairedFeatures]:
    """Name pair sets ``"<anchor>-<other>"`` (for :class:`ContrastiveStrategy`)."""
    return {p.name: p for p in sets}


__all__ = [
    "ContrastiveOptim",
    "ContrastiveStrategy",
    "JointTrainConfig",
    "build_contrastive",
    "build_loss",
    "paired",
]
