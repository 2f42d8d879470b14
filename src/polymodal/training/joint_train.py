"""Run a joint embedding config: features, contrastive training, test metrics, checkpoint.

:func:`train_joint` is what ``polymodal train CONFIG.yaml`` runs for a
:class:`~polymodal.training.joint_config.JointTrainConfig` (``task: contrastive``):

1. build the :class:`~polymodal.models.joint.JointEmbeddingModel` from ``config.model``
   (its encoders from the registry; they must be frozen);
2. for each pair set and split, the pooled encoder features of the anchor and the other
   modality, read from or written to the feature cache
   (:func:`~polymodal.retrieval.features.cached_features`; keyed by data set, split,
   modality, encoder, its weights, the data set's loader options and the example ids, so
   a Flickr8k run reuses the features ``benchmarks/retrieval.py`` cached);
3. :func:`~polymodal.training.contrastive.train_contrastive` on every pair set's training
   split at once, early-stopped on the validation splits;
4. the test splits' retrieval metrics, once, with the best state;
5. ``<run>/checkpoints/best`` (a checkpoint ``polymodal embed`` and ``polymodal search``
   take), ``<run>/config.yaml`` and ``<run>/metrics.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polymodal.data.collate import collate
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.datasets._common import load_dataset
from polymodal.data.datasets.flickr8k import Flickr8k
from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch
from polymodal.models.joint import JointEmbeddingModel
from polymodal.retrieval.features import cached_features, text_batch
from polymodal.training.checkpoint import atomic_write_text
from polymodal.training.contrastive import (
    PairedFeatures,
    evaluate_pairs,
    save_joint_checkpoint,
    train_contrastive,
)
from polymodal.training.joint_config import JointTrainConfig, PairSetConfig


@dataclass
class JointRunResult:
    """What :func:`train_joint` returns.

    Attributes:
        run_dir: the run folder.
        checkpoint: the checkpoint folder (``<run>/checkpoints/best``).
        best_epoch: the epoch whose state was kept.
        epochs_run: epochs trained (early stopping may end before ``optim.epochs``).
        val: validation metrics of the best epoch (``None`` without validation splits).
        test: test metrics (``None`` without test splits).
        seconds: training time (features excluded).
        feature_seconds: time to compute or read the features.
    """

    run_dir: Path
    checkpoint: Path
    best_epoch: int
    epochs_run: int
    val: dict[str, float] | None
    test: dict[str, float] | None
    seconds: float
    feature_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class _Examples:
    """Ids of the anchor rows, the other rows and each other row's anchor row."""

    anchor_ids: list[str]
    other_ids: list[str]
    other_to_anchor: list[int]
    texts: list[str] | None  # the other rows' texts, when the other side is text


def _examples(ds: MultimodalDataset, count: int, other: str, other_is_text: bool) -> _Examples:
    """The rows of the first ``count`` examples; Flickr8k's are read without decoding."""
    anchor_ids: list[str] = []
    other_ids: list[str] = []
    owners: list[int] = []
    texts: list[str] = []
    if isinstance(ds, Flickr8k) and not ds.pairs and other == "text":
        items: Sequence[tuple[str, list[str] | None, Any]] = [
            (name, caps, None)
            for name, caps in zip(ds.images()[:count], ds.captions()[:count], strict=True)
        ]
    else:
        samples = [ds[i] for i in range(count)]
        items = [
            (s.id, s.meta.get("captions") if other_is_text else None, s.modalities.get(other))
            for s in samples
        ]
    for row, (example_id, captions, value) in enumerate(items):
        anchor_ids.append(example_id)
        if isinstance(captions, list) and captions:
            for k, text in enumerate(captions):
                other_ids.append(f"{example_id}#{k}")
                owners.append(row)
                texts.append(str(text))
        else:
            other_ids.append(example_id)
            owners.append(row)
            texts.append(str(value))
    return _Examples(anchor_ids, other_ids, owners, texts if other_is_text else None)


def _text_rows(texts: list[str]) -> Callable[[Sequence[int]], ModalityBatch]:
    return lambda pos: text_batch([texts[i] for i in pos])


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
        ValueError: the data set lacks one of the modalities, or an encoder is trainable
            (its features cannot be cached).
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
    other_is_text = ds.schema[pset.other].kind is ModalityKind.TEXT
    ex = _examples(ds, count, pset.other, other_is_text)

    def modality_batch(m: str) -> Callable[[Sequence[int]], ModalityBatch]:
        schema = ds.schema.select([m])
        return lambda pos: collate([ds[i] for i in pos], schema)[m]

    feats = {}
    for m, ids in ((anchor, ex.anchor_ids), (pset.other, ex.other_ids)):
        enc_cfg = model.config[m].encoder
        params: dict[str, Any] = dict(enc_cfg.params)
        if pset.options:  # other loader options, other inputs: part of the cache key
            params["data_options"] = dict(pset.options)
        if m == pset.other and ex.texts is not None:
            make = _text_rows(ex.texts)
        else:
            make = modality_batch(m)
        if progress is not None:
            progress(f"features: {pset.dataset} {split} {m} ({len(ids)} rows)")
        feats[m] = cached_features(
            model.encoders[m],
            make,
            ids,
            dataset=pset.dataset,
            split=split,
            modality=m,
            encoder_name=enc_cfg.name,
            encoder_params=params,
            root=cache_root,
            batch_size=pset.embed_batch_size,
        ).features
    return PairedFeatures(
        anchor,
        pset.other,
        feats[anchor],
        feats[pset.other],
        torch.tensor(ex.other_to_anchor),
    )


def _with_prefix(metrics: dict[str, float], name: str, many: bool) -> dict[str, float]:
    return {(f"{name}/{k}" if many else k): v for k, v in metrics.items()}


def train_joint(config: JointTrainConfig, *, log: bool = True) -> JointRunResult:
    """Train ``config``'s joint model; see the module docstring for the steps.

    Returns:
        a :class:`JointRunResult`; the checkpoint holds the best state and, in its state,
        the validation and test metrics.
    """

    def say(msg: str) -> None:
        if log:
            print(msg, flush=True)

    torch.manual_seed(config.seed)
    model = JointEmbeddingModel(config.model)
    t0 = time.perf_counter()
    data: dict[str, dict[str, PairedFeatures]] = {"train": {}, "val": {}, "test": {}}
    for name, pset in config.pairs.items():
        for role, split in pset.splits().items():
            if split is not None:
                data[role][name] = pair_features(
                    model,
                    pset,
                    config.anchor_of(name),
                    split,
                    cache_root=config.feature_cache,
                    progress=say,
                )
    feature_seconds = time.perf_counter() - t0
    say(f"features ready in {feature_seconds:.1f}s")
    val_sets = list(data["val"].values()) or None
    result = train_contrastive(
        model,
        list(data["train"].values()),
        val_sets,
        config.optim,
        log=log,
    )
    many = len(config.pairs) > 1
    test: dict[str, float] | None = None
    if data["test"]:
        test = {}
        for name, p in data["test"].items():
            test.update(_with_prefix(evaluate_pairs(model, [p]), name, many))
    val = dict(result.metrics) if val_sets is not None else None
    state = {
        "epoch": result.best_epoch,
        "metrics": val or {},
        "test_metrics": test or {},
        "run": config.name,
    }
    ckpt = save_joint_checkpoint(config.checkpoint_dir, model, state)
    run_dir = config.run_dir
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "val": val,
        "test": test,
        "seconds": result.seconds,
        "feature_seconds": feature_seconds,
        "history": result.history,
        "checkpoint": str(ckpt),
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(summary, indent=1) + "\n")
    return JointRunResult(
        run_dir=run_dir,
        checkpoint=ckpt,
        best_epoch=result.best_epoch,
        epochs_run=len(result.history),
        val=val,
        test=test,
        seconds=result.seconds,
        feature_seconds=feature_seconds,
        history=result.history,
    )


__all__ = ["JointRunResult", "pair_features", "train_joint"]
