"""Cached pooled features of frozen encoders: embed a data set once, train heads in seconds.

With frozen encoders (``minilm``, ``efficientnet_lite0``), every epoch of projection
training would recompute the same encoder outputs.  :func:`cached_features` runs the
encoder once over a list of examples and stores the pooled (N, D) features on disk, under
``cache_dir()/"features"/<key>`` (see :func:`feature_key`), where the key names the data
set, split, modality and encoder, and carries a checksum of

* the encoder's name and build parameters,
* the encoder's weights (every tensor of its ``state_dict``, byte for byte),
* the example ids, in order,

so changing any of them (other weights, another subset, a reordered split) is a cache
miss, never a stale hit.  The folder holds ``features.npy`` (N, D) float32, ``ids.json``
and ``info.json``; it is written to a temporary folder and renamed into place, so a crash
never leaves a half-written entry that a later run would read.  An entry damaged later
(cut short, modified, NaN features) is logged as a warning naming the file, and computed
again.

Partial fine-tuning (e.g. ``minilm`` with ``trainable_layers=2``) changes the encoder's
outputs at every step, so its pooled features cannot be cached; but its frozen *stem*'s
can (:attr:`~polymodal.encoders.base.Encoder.has_stem`): with ``stem=True``,
:func:`cached_features` stores what the stem outputs, the inputs of the trained blocks,
and a joint space trains those blocks on them (:class:`Ragged` rows: a text's token
states, an image's map positions), keyed by the frozen weights only.  Otherwise the
cache is for encoders whose parameters are all frozen; :func:`cached_features` refuses
others unless ``allow_trainable=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.checkpoint import weights_checksum
from polymodal.data.paths import cache_dir
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import Encoder
from polymodal.encoders.disk_cache import cache_folder, paused
from polymodal.outputs import EncoderOutput
from polymodal.progress import progress as show_progress

logger = logging.getLogger(__name__)

FEATURES_FILE = "features.npy"
LENGTHS_FILE = "lengths.npy"
IDS_FILE = "ids.json"
INFO_FILE = "info.json"
#: Version of the cache layout; part of every key.
CACHE_VERSION = 1

#: Builds the encoder input for the examples at the given positions.
BatchFn = Callable[[Sequence[int]], ModalityBatch]


@dataclass(frozen=True)
class Ragged:
    """N sequences of varying length packed into one tensor (a stem's cached outputs).

    Args:
        values: the steps of every sequence, one after another.
        lengths: the number of steps of each sequence.

    Shape:
        values: (T, E) with T = lengths.sum(); lengths: (N,) long.
    """

    values: Tensor
    lengths: Tensor
    starts: Tensor = field(init=False, repr=False, compare=False)  # (N,) first step of each

    def __post_init__(self) -> None:
        if self.values.dim() != 2 or self.lengths.dim() != 1:
            raise ValueError(
                f"Ragged: values must be (T, E) and lengths (N,), got {tuple(self.values.shape)} "
                f"and {tuple(self.lengths.shape)}."
            )
        if int(self.lengths.sum()) != self.values.shape[0] or bool((self.lengths < 1).any()):
            raise ValueError(
                f"Ragged: lengths (each >= 1) must sum to the {self.values.shape[0]} rows of "
                f"values, got a sum of {int(self.lengths.sum())}."
            )
        starts = torch.cumsum(self.lengths, 0) - self.lengths  # (N,)
        object.__setattr__(self, "starts", starts)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def width(self) -> int:
        """E, the size of each step."""
        return int(self.values.shape[1])

    def to(self, device: torch.device | str) -> Ragged:
        return Ragged(self.values.to(device), self.lengths.to(device))

    def rows(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The sequences at ``index``, zero-padded to the longest of them, and their mask.

        Shape:
            index: (B,) long; output: (B, L, E) and (B, L) bool, True at real steps.
        """
        index = index.to(self.lengths.device)
        lengths = self.lengths[index]  # (B,)
        steps = torch.arange(int(lengths.max()), device=index.device)  # (L,)
        mask = steps[None, :] < lengths[:, None]  # (B, L)
        at = (self.starts[index][:, None] + steps[None, :]).clamp(max=self.values.shape[0] - 1)
        seq = self.values[at] * mask.unsqueeze(-1).to(self.values.dtype)  # (B, L, E)
        return seq, mask


@dataclass(frozen=True)
class FeatureSet:
    """Pooled features (or stem outputs) of a list of examples.

    Attributes:
        features: (N, D) float32 pooled encoder outputs, row ``i`` for ``ids[i]``; with
            ``stem=True``, the (T, E) steps of every example's stem output, packed.
        ids: the N example ids.
        key: the cache key (folder name under the cache root).
        path: the cache folder.
        hit: whether the features were read from the cache (False: computed now).
        seconds: time taken to compute (or read) them.
        lengths: with ``stem=True``, (N,) the steps of each example (:meth:`ragged`).
    """

    features: Tensor
    ids: list[str]
    key: str
    path: Path
    hit: bool
    seconds: float
    lengths: Tensor | None = None

    def ragged(self) -> Ragged:
        """The stem outputs as :class:`Ragged` sequences (needs ``stem=True``)."""
        if self.lengths is None:
            raise ValueError(f"The feature set {self.key} holds pooled rows, not stem outputs.")
        return Ragged(self.features, self.lengths)


def default_root() -> Path:
    """Where cached features live unless told otherwise: the folder
    ``$POLYMODAL_FEATURE_CACHE`` names, else ``cache_dir() / "features"``; the per-input
    cache of :mod:`polymodal.encoders.disk_cache` lives there too.  (Its ``off`` value
    turns off that cache only; these split-level features are always cached.)"""
    return cache_folder() or cache_dir() / "features"


def ids_checksum(ids: Sequence[str]) -> str:
    """SHA-256 (first 16 hex digits) of the ids in order."""
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def feature_key(
    dataset: str,
    split: str,
    modality: str,
    encoder_name: str,
    encoder_params: Mapping[str, Any],
    weights: str,
    ids: Sequence[str],
) -> str:
    """The cache folder name: ``<dataset>-<split>-<modality>-<encoder>-<checksum>``.

    The checksum covers the encoder parameters (as sorted JSON), the weights checksum
    (:func:`weights_checksum`), the ids (:func:`ids_checksum`) and the cache version.
    """
    try:
        params = json.dumps(dict(encoder_params), sort_keys=True, default=str)
    except TypeError as exc:  # pragma: no cover - default=str accepts anything
        raise TypeError(f"feature_key: encoder_params must be JSON-like ({exc}).") from exc
    digest = hashlib.sha256(
        "|".join([str(CACHE_VERSION), params, weights, ids_checksum(ids)]).encode()
    ).hexdigest()[:20]
    parts = [dataset, split, modality, encoder_name]
    return "-".join(_slug(p) for p in parts) + "-" + digest


class _Damaged(Exception):
    """A cache entry that is not what :func:`_write` wrote; the message names the file."""


def _read(path: Path, ids: Sequence[str], stem: bool) -> tuple[Tensor, Tensor | None] | None:
    """The cached features in ``path``, or ``None`` when there are none (a miss).

    A damaged entry (a file missing, cut short, modified, or features with NaN/inf) is a
    miss too, but not a silent one: a warning names the file and what is wrong, and the
    features computed again replace the entry.
    """
    if not path.is_dir():
        return None
    try:
        return _read_entry(path, ids, stem)
    except _Damaged as exc:
        logger.warning("%s; computing the features again (they replace the entry)", exc)
        return None


def _read_entry(path: Path, ids: Sequence[str], stem: bool) -> tuple[Tensor, Tensor | None]:
    ids_file, features_file = path / IDS_FILE, path / FEATURES_FILE
    files = (ids_file, features_file, path / LENGTHS_FILE) if stem else (ids_file, features_file)
    for file in files:
        if not file.is_file():
            raise _Damaged(f"The feature cache entry {path} is incomplete: {file.name} is missing")
    try:
        stored_ids = json.loads(ids_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, not JSON
        raise _Damaged(f"{ids_file} is not a JSON list of ids ({exc})") from None
    if stored_ids != list(ids):
        n = len(stored_ids) if isinstance(stored_ids, list) else type(stored_ids).__name__
        raise _Damaged(f"{ids_file} does not hold the {len(ids)} ids of its key (got {n})")
    try:
        features = np.load(features_file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _Damaged(f"{features_file} is not a readable .npy array ({exc})") from None
    lengths = _read_lengths(path / LENGTHS_FILE, len(ids)) if stem else None
    rows = len(ids) if lengths is None else int(lengths.sum())
    if features.dtype.kind != "f" or features.shape[:1] != (rows,) or features.ndim != 2:
        raise _Damaged(
            f"{features_file} holds a {features.dtype} array of shape {features.shape}, not "
            f"({rows}, D) floats"
        )
    finite = np.isfinite(features).all(axis=1)  # (rows,)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        if lengths is not None:  # the example that step belongs to
            row = int(np.searchsorted(np.cumsum(lengths), row, side="right"))
        raise _Damaged(f"{features_file} row {row} (id {ids[row]!r}) holds NaN or inf values")
    out = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    return out, None if lengths is None else torch.from_numpy(lengths)


def _read_lengths(file: Path, count: int) -> np.ndarray:
    try:
        lengths = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _Damaged(f"{file} is not a readable .npy array ({exc})") from None
    if lengths.dtype != np.int64 or lengths.shape != (count,) or (lengths < 1).any():
        raise _Damaged(
            f"{file} holds a {lengths.dtype} array of shape {lengths.shape}, not {count} "
            "step counts >= 1"
        )
    return np.asarray(lengths)


def _write(
    path: Path,
    features: Tensor,
    ids: Sequence[str],
    info: dict[str, Any],
    lengths: Tensor | None = None,
) -> None:
    """Write the entry to a temporary sibling folder, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        writers: list[tuple[str, Callable[[Path], object]]] = [
            (FEATURES_FILE, lambda p: np.save(p, features.numpy())),
            (IDS_FILE, lambda p: p.write_text(json.dumps(list(ids)))),
            (INFO_FILE, lambda p: p.write_text(json.dumps(info, indent=1) + "\n")),
        ]
        if lengths is not None:
            writers.append((LENGTHS_FILE, lambda p: np.save(p, lengths.long().numpy())))
        for name, write in writers:
            write(tmp / name)
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def embed_pooled(
    encoder: nn.Module,
    make_batch: BatchFn,
    count: int,
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    desc: str = "encoding",
) -> Tensor:
    """Run ``encoder`` in eval mode over ``count`` examples and stack the pooled outputs.

    Reports its progress (:func:`polymodal.progress.progress`, described by ``desc``).

    Args:
        encoder: an :class:`~polymodal.encoders.base.Encoder` (returns ``.pooled``).
        make_batch: builds the :class:`ModalityBatch` for a list of positions.
        count: number of examples N.
        batch_size: examples per forward pass.
        progress: called with (done, count) after each batch.
        desc: what is done, for the progress bar or log lines.

    Shape:
        output: (N, D) float32 on the CPU.
    """
    run: Callable[[ModalityBatch], list[Tensor]] = lambda b: [encoder(b).pooled]  # noqa: E731
    parts = _embed("embed_pooled", encoder, run, make_batch, count, batch_size, progress, desc)
    return torch.cat([p[0] for p in parts])  # (N, D)


def embed_stems(
    encoder: Encoder,
    make_batch: BatchFn,
    count: int,
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    desc: str = "encoding",
) -> Ragged:
    """Run the frozen stem of ``encoder`` (:meth:`~polymodal.encoders.base.Encoder.forward_stem`)
    over ``count`` examples; as :func:`embed_pooled` otherwise.

    Shape:
        output: N sequences (T, E) float32 on the CPU, packed.
    """

    def run(batch: ModalityBatch) -> list[Tensor]:
        seq, mask = encoder.forward_stem(batch)  # (b, L, E), (b, L), real steps first
        return [seq[mask], mask.sum(1)]  # (t, E), (b,)

    parts = _embed("embed_stems", encoder, run, make_batch, count, batch_size, progress, desc)
    return Ragged(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]).long())


@torch.no_grad()
def _embed(
    what: str,
    encoder: nn.Module,
    run: Callable[[ModalityBatch], list[Tensor]],
    make_batch: BatchFn,
    count: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    desc: str,
) -> list[list[Tensor]]:
    """``run`` in eval mode on the batches of ``count`` examples, its outputs on the CPU."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{what}: 'batch_size' must be an int >= 1, got {batch_size!r}.")
    was_training = encoder.training
    encoder.eval()
    device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    out: list[list[Tensor]] = []
    starts = range(0, count, batch_size)
    try:
        for start in show_progress(starts, desc=desc, unit="batches"):
            positions = list(range(start, min(count, start + batch_size)))
            result = run(make_batch(positions).to(device))
            out.append(
                [
                    t.detach().cpu() if t.dtype == torch.long else t.detach().float().cpu()
                    for t in result
                ]
            )
            if progress is not None:
                progress(positions[-1] + 1, count)
    finally:
        encoder.train(was_training)
    if not out:
        raise ValueError(f"{what}: there are no examples to embed (count=0).")
    return out


def cached_features(
    encoder: nn.Module,
    make_batch: BatchFn,
    ids: Sequence[str],
    *,
    dataset: str,
    split: str,
    modality: str,
    encoder_name: str,
    encoder_params: Mapping[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    allow_trainable: bool = False,
    stem: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureSet:
    """Pooled features of ``ids``, read from the cache or computed once and cached.

    Args:
        encoder: a frozen encoder (every parameter with ``requires_grad=False``), or with
            ``stem=True`` one with a frozen stem (``has_stem``).
        make_batch: builds the encoder input for a list of positions into ``ids``.
        ids: one unique id per example, in order (part of the key: other ids, another key).
        dataset, split, modality: names for the key (e.g. ``"flickr8k"``, ``"train"``,
            ``"image"``).
        encoder_name, encoder_params: the registry name and build parameters of the encoder.
        root: the cache root; ``None`` means :func:`default_root`.
        batch_size: examples per forward pass when computing.
        allow_trainable: cache even if some encoder parameter is trainable (the cache is
            keyed by the current weights, so it stays correct, but goes stale each step).
        stem: cache the outputs of the encoder's frozen stem (:func:`embed_stems`), keyed
            by its frozen weights only, so training the tail never makes them stale.
        progress: called with (done, N) while computing.

    Returns:
        a :class:`FeatureSet`; ``features`` is (N, D) float32, or with ``stem=True`` the
        packed (T, E) steps and ``lengths`` (:meth:`FeatureSet.ragged`).
    """
    ids = list(ids)
    if not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError(
            "cached_features: 'ids' must be a non-empty list of strings (one per example)."
        )
    if len(set(ids)) != len(ids):
        raise ValueError(
            "cached_features: 'ids' must be unique; repeated ids would make rows ambiguous."
        )
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    if stem and not getattr(encoder, "has_stem", False):
        raise ValueError(
            f"cached_features: stem=True needs an encoder with a frozen stem; "
            f"{encoder_name!r} has none (set its trainable_layers)."
        )
    if trainable and not (allow_trainable or stem):
        raise ValueError(
            f"cached_features: encoder {encoder_name!r} has {len(trainable)} trainable "
            f"parameters (first: {trainable[0]!r}); cached features would go stale as it "
            "trains. Build it frozen (freeze=True), or pass allow_trainable=True."
        )
    params = dict(encoder_params or {})
    weights = weights_checksum(encoder, exclude=set(trainable) if stem else ())
    key = feature_key(dataset, split, modality, encoder_name, params, weights, ids)
    path = (Path(root) if root is not None else default_root()) / key
    start = time.perf_counter()
    cached = _read(path, ids, stem)
    if cached is not None:
        seconds = time.perf_counter() - start
        return FeatureSet(cached[0], ids, key, path, True, seconds, cached[1])
    desc = f"encoding {modality} of {dataset} {split} (frozen {encoder_name})"
    lengths = None
    with paused():  # this entry holds the pooled rows; per-input entries would double them
        kwargs: dict[str, Any] = dict(batch_size=batch_size, progress=progress, desc=desc)
        if stem:
            assert isinstance(encoder, Encoder)  # has_stem, checked above
            ragged = embed_stems(encoder, make_batch, len(ids), **kwargs)
            features, lengths = ragged.values, ragged.lengths
        else:
            features = embed_pooled(encoder, make_batch, len(ids), **kwargs)
    info = {
        "cache_version": CACHE_VERSION,
        "dataset": dataset,
        "split": split,
        "modality": modality,
        "encoder": encoder_name,
        "encoder_params": json.loads(json.dumps(params, default=str)),
        "weights_checksum": weights,
        "ids_checksum": ids_checksum(ids),
        "count": len(ids),
        "dim": int(features.shape[1]),
        "stem": stem,
    }
    _write(path, features, ids, info, lengths)
    seconds = time.perf_counter() - start
    return FeatureSet(features, ids, key, path, False, seconds, lengths)


class SequenceRows(nn.Module):
    """An encoder whose ``pooled`` output is its sequence flattened, to cache sequences as rows.

    :func:`cached_features` stores (N, L * F) rows of it; ``.view(N, L, F)`` gives the
    sequences back.  Only for encoders whose sequences all have the same length L (image
    maps).

    Shape:
        output.pooled: (B, L * F)
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        out = self.encoder(batch)
        return EncoderOutput(out.sequence, out.mask, out.sequence.flatten(1))  # (B, L*F)


def text_batch(texts: Sequence[str]) -> ModalityBatch:
    """A text :class:`ModalityBatch` of ``texts``, every example present."""
    return ModalityBatch(list(texts), torch.ones(len(texts), dtype=torch.bool))


def tensor_batch(values: Sequence[Tensor]) -> ModalityBatch:
    """A :class:`ModalityBatch` stacking same-shaped tensors, every example present."""
    stacked: Tensor = torch.stack(list(values))
    return ModalityBatch(stacked, torch.ones(stacked.shape[0], dtype=torch.bool))


__all__ = [
    "CACHE_VERSION",
    "FeatureSet",
    "Ragged",
    "SequenceRows",
    "cached_features",
    "default_root",
    "embed_pooled",
    "embed_stems",
    "feature_key",
    "ids_checksum",
    "tensor_batch",
    "text_batch",
]
