"""Paired features: what a joint space is trained and validated on.

A *pair set* (:class:`PairSetConfig`) pairs the model's anchor modality with another one
over the examples of a data set: image-text from Flickr8k, image-audio from av_digits.
:func:`pair_features` turns one split of it into :class:`PairedFeatures`, the pooled
features of the frozen encoders (read from or written to the feature cache,
:func:`~polymodal.joint.features.cached_features`; for an encoder that fine-tunes its last
blocks, the outputs of its frozen stem, which :func:`embed_rows` runs those blocks on),
with one anchor row per example and one other row per text row
(:meth:`~polymodal.data.dataset.MultimodalDataset.text_rows`: an image with five captions
gives five text rows, all paired with its image row).

:func:`evaluate_pairs` measures retrieval both ways on paired features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from polymodal.config import Config, param
from polymodal.data.collate import collate
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.datasets import load_dataset
from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch
from polymodal.joint.features import Ragged, SequenceRows, cached_features, text_batch
from polymodal.joint.model import JointEmbeddingModel
from polymodal.retrieval.metrics import retrieval_metrics


@dataclass(frozen=True, kw_only=True)
class PairSetConfig(Config):
    """One pair set: (anchor, other) pairs from the examples of a built-in data set.

    Each example gives one anchor row and one other row, or, when the other modality is
    text and an example lists several captions, one other row per caption, all paired with
    the example's anchor row.

    Args:
        dataset: a built-in data set name (``polymodal datasets list``).
        other: the model modality paired with the anchor; also the data set's modality
            name.
        anchor: the anchor side; ``None`` means the model's anchor.
        root: folder holding the data set (``None``: ``$POLYMODAL_DATA``, then the cache).
        options: keyword options of the data set's loader (e.g. ``image_size: 128``).
        train_split: split whose pairs train the projections.
        val_split: split for early stopping and the reported validation metrics
            (``None``: this set is not validated).  Never the test split.
        test_split: split evaluated once at the end (``None``: none).
        limit: only the first ``limit`` examples of each split (smoke tests, quick runs).
        embed_batch_size: examples per encoder forward pass when computing features.
    """

    dataset: str
    other: str
    anchor: str | None = None
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    limit: int | None = param(None, ge=1)
    embed_batch_size: int = param(64, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dataset:
            raise ValueError("pairs: 'dataset' must name a built-in data set, got ''.")
        if self.val_split is not None and self.val_split == self.test_split:
            raise ValueError(
                f"pairs: 'val_split' and 'test_split' are both {self.val_split!r}; early "
                "stopping on the test split would make its metrics optimistic. Use another "
                "validation split or val_split=null."
            )

    def splits(self) -> dict[str, str | None]:
        """Role (``train``, ``val``, ``test``) -> split name (``None``: unused)."""
        return {"train": self.train_split, "val": self.val_split, "test": self.test_split}


@dataclass(frozen=True)
class PairedFeatures:
    """Cached pooled features of (anchor, other) pairs.

    Args:
        anchor, other: modality names of the joint model.
        anchor_features: encoder features of the anchor rows: pooled, or sequences for a
            modality whose projection pools them (``pool: attention``), or the stem's
            outputs (:class:`~polymodal.joint.features.Ragged`) for an encoder that
            fine-tunes its last blocks (``trainable_layers``).
        other_features: encoder features of the other rows, likewise.
        other_to_anchor: for each other row, the anchor row it pairs with; ``None``
            means row ``i`` pairs with row ``i`` (equal counts).

    Shape:
        anchor_features: (Na, Ea) or (Na, L, Ea); other_features: (No, Eo) or (No, L, Eo);
        other_to_anchor: (No,) long.
    """

    anchor: str
    other: str
    anchor_features: Tensor | Ragged
    other_features: Tensor | Ragged
    other_to_anchor: Tensor | None = None

    def __post_init__(self) -> None:
        where = f"PairedFeatures({self.anchor!r}, {self.other!r})"
        for name in ("anchor_features", "other_features"):
            x = getattr(self, name)
            ok = isinstance(x, Ragged) or (isinstance(x, Tensor) and x.dim() in (2, 3))
            if not ok or len(x) == 0:
                raise ValueError(
                    f"{where}: {name!r} must be a non-empty (N, E) tensor (or (N, L, E) "
                    "sequences, or Ragged stem outputs)."
                )
        na, no = len(self.anchor_features), len(self.other_features)
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
    def name(self) -> str:
        """``"<anchor>-<other>"``."""
        return f"{self.anchor}-{self.other}"

    @property
    def mapping(self) -> Tensor:
        """(No,) long: the anchor row of each other row."""
        mapping = self.other_to_anchor
        assert mapping is not None  # set in __post_init__
        return mapping

    def to(self, device: torch.device) -> PairedFeatures:
        """The features on ``device`` (the pairing stays where it is)."""
        a, o = self.anchor_features.to(device), self.other_features.to(device)
        return PairedFeatures(self.anchor, self.other, a, o, self.mapping)

    def groups(self) -> tuple[Tensor, Tensor]:
        """(Na, G) other-row indices of each anchor (padded with -1) and (Na,) counts."""
        na = len(self.anchor_features)
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


def check_pairs(
    model: JointEmbeddingModel, pairs: Sequence[PairedFeatures], what: str
) -> list[PairedFeatures]:
    """``pairs`` as a list, each set's modalities in ``model`` with its encoders' dims."""
    if isinstance(pairs, PairedFeatures):
        pairs = [pairs]
    out = list(pairs)
    if not out or not all(isinstance(p, PairedFeatures) for p in out):
        raise TypeError(f"{what} pairs must be a non-empty list of PairedFeatures.")
    for p in out:
        for name, feats in ((p.anchor, p.anchor_features), (p.other, p.other_features)):
            if name not in model.modalities:
                raise ValueError(
                    f"{what} pair ({p.anchor!r}, {p.other!r}) uses modality {name!r}, which "
                    f"the model lacks; it has {model.modalities}."
                )
            stem = model.tunes_stem(name)
            if isinstance(feats, Ragged) != stem:
                have = "stem outputs (Ragged)" if isinstance(feats, Ragged) else "encoder outputs"
                want = (
                    "its frozen stem's outputs (trainable_layers is set; pair_features caches them)"
                    if stem
                    else "encoder outputs (it has no frozen stem)"
                )
                raise ValueError(
                    f"{what} features of {name!r} are {have}, but the model's {name} encoder "
                    f"reads {want}."
                )
            if isinstance(feats, Ragged):  # the stem's outputs: the tail checks them
                continue
            expected = model.feature_dim(name)
            if feats.shape[-1] != expected:
                raise ValueError(
                    f"{what} features of {name!r} have {feats.shape[-1]} dims, but the "
                    f"model's {name} encoder outputs {expected}. Cache the features with the "
                    "model's own encoder."
                )
            seq = model.pools_sequence(name)
            if feats.dim() != (3 if seq else 2):
                raise ValueError(
                    f"{what} features of {name!r} have shape {tuple(feats.shape)}, but the "
                    f"model's {name} projection reads "
                    + (
                        "(N, L, E) sequences (pool: attention)."
                        if seq
                        else "(N, E) pooled vectors."
                    )
                )
    return out


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
        for p in check_pairs(model, pairs, "evaluation"):
            device = next(iter(model.projections[p.anchor].parameters())).device
            p = p.to(device)
            za = embed_rows(model, p.anchor, p.anchor_features).float().cpu()  # (Na, D)
            zo = embed_rows(model, p.other, p.other_features).float().cpu()  # (No, D)
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


def embed_rows(
    model: JointEmbeddingModel,
    modality: str,
    features: Tensor | Ragged,
    rows: Tensor | None = None,
    chunk: int = 2048,
) -> Tensor:
    """Embed the cached features of ``rows`` (``None``: all) into the joint space.

    Pooled or sequence features go through :meth:`~JointEmbeddingModel.project`, stem
    outputs through :meth:`~JointEmbeddingModel.project_stem` (the encoder's trained
    blocks, then the projection), ``chunk`` rows at a time when no gradient is recorded.

    Shape:
        features: (N, E), (N, L, E) or N Ragged sequences; rows: (B,) long; output: (B, D).
    """
    if rows is None:
        rows = torch.arange(
            len(features),
            device=features.lengths.device if isinstance(features, Ragged) else features.device,
        )
    if not isinstance(features, Ragged):
        return model.project(modality, features[rows])
    if torch.is_grad_enabled():
        chunk = rows.numel()
    parts = [
        model.project_stem(modality, *features.rows(rows[i : i + chunk]))
        for i in range(0, rows.numel(), max(1, chunk))
    ]
    return torch.cat(parts)  # (B, D)


def pair_features(
    model: JointEmbeddingModel,
    pset: PairSetConfig,
    anchor: str,
    split: str,
    *,
    cache_root: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PairedFeatures:
    """The cached pooled features of one split of a pair set.

    Raises:
        ValueError: the data set lacks one of the modalities, the split is empty, or an
            encoder is trainable (its features cannot be cached).
    """
    kwargs: dict[str, Any] = dict(pset.options)
    if pset.root is not None:
        kwargs["root"] = pset.root
    ds = load_dataset(pset.dataset, split=split, **kwargs)
    for m in (anchor, pset.other):
        if m not in ds.schema:
            raise ValueError(
                f"Pair set {pset.dataset!r}: the data set has no modality {m!r}; it has "
                f"{ds.schema.names}. Name the model's modalities after the data set's."
            )
    count = len(ds) if pset.limit is None else min(pset.limit, len(ds))
    if count == 0:
        raise ValueError(f"Pair set {pset.dataset!r}: split {split!r} has no examples.")
    anchor_ids = ds.ids()[:count]
    other_batch: Callable[[Sequence[int]], ModalityBatch]
    if ds.schema[pset.other].kind is ModalityKind.TEXT:
        rows = ds.text_rows(pset.other, count)
        other_ids = [r.id for r in rows]
        owners = [r.example for r in rows]
        texts = [r.text for r in rows]
        other_batch = _text_batches(texts)
    else:
        other_ids, owners = list(anchor_ids), list(range(count))
        other_batch = _modality_batches(ds, pset.other)
    feats = {}
    for m, ids, make in (
        (anchor, anchor_ids, _modality_batches(ds, anchor)),
        (pset.other, other_ids, other_batch),
    ):
        enc_cfg = model.config[m].encoder
        params: dict[str, Any] = dict(enc_cfg.params)
        if pset.options:  # other loader options, other inputs: part of the cache key
            params["data_options"] = dict(pset.options)
        encoder, modality = model.encoders[m], m
        stem, seq = model.tunes_stem(m), model.pools_sequence(m)
        if stem:  # the frozen stem's outputs, which the trained blocks read
            modality = f"{m}_stem"
        elif seq:  # the spatial maps, as captioning caches them (same key: one entry for both)
            encoder, modality = SequenceRows(encoder), f"{m}_seq"
        shape = model.config[m].spec.shape
        if (stem or seq) and shape is not None:
            params["image_size"] = shape[-1]
        if progress is not None:
            progress(f"features: {pset.dataset} {split} {modality} ({len(ids)} rows)")
        found = cached_features(
            encoder,
            make,
            ids,
            dataset=pset.dataset,
            split=split,
            modality=modality,
            encoder_name=enc_cfg.name,
            encoder_params=params,
            root=cache_root,
            batch_size=pset.embed_batch_size,
            stem=stem,
        )
        e = model.feature_dim(m)
        x = found.features
        feats[m] = found.ragged() if stem else x.view(len(ids), -1, e) if seq else x  # (N, [L,] E)
    return PairedFeatures(
        anchor, pset.other, feats[anchor], feats[pset.other], torch.tensor(owners)
    )


def _text_batches(texts: list[str]) -> Callable[[Sequence[int]], ModalityBatch]:
    return lambda pos: text_batch([texts[i] for i in pos])


def _modality_batches(ds: MultimodalDataset, m: str) -> Callable[[Sequence[int]], ModalityBatch]:
    schema = ds.schema.select([m])
    return lambda pos: collate([ds[i] for i in pos], schema)[m]


__all__ = [
    "PairSetConfig",
    "PairedFeatures",
    "check_pairs",
    "embed_rows",
    "evaluate_pairs",
    "pair_features",
]
