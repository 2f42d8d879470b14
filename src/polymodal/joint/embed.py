"""Embedding a data set with a joint model, and the embeddings folder format.

:func:`embed_dataset` maps every item of the chosen modalities into the joint space;
:func:`write_embeddings` stores the result as a folder ``polymodal index build`` reads::

    DIR/embeddings.json          format, version, checkpoint, model fingerprint, D, counts
    DIR/<modality>/vectors.npy   (N, D) float32 unit vectors
    DIR/<modality>/ids.json      the N item ids
    DIR/<modality>/metadata.json one dict per item: modality, example (its example's id),
                                 path (the item's file, when it has one), text (text items),
                                 image_path (an item's example image, for thumbnails)

Text items follow the captions-to-rows convention of
:func:`~polymodal.data.dataset.sample_text_rows`: an example listing several captions gives
one item per caption, id ``<example>#<k>``.  ``embeddings.json`` is written last, so a
folder without it is incomplete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.checkpoint import atomic_write_text
from polymodal.checkpoint_files import CheckpointError, read_json, read_json_object
from polymodal.data.collate import collate
from polymodal.data.dataset import MultimodalDataset, sample_text_rows
from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch, Sample
from polymodal.joint.model import JointEmbeddingModel
from polymodal.progress import progress

EMBEDDINGS_FILE = "embeddings.json"
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.json"
METADATA_FILE = "metadata.json"
EMBEDDINGS_FORMAT = "polymodal-embeddings"
FORMAT_VERSION = 1


@dataclass
class Embedded:
    """One modality's embedded items.

    Attributes:
        vectors: (N, D) float32 unit vectors.
        ids: the N item ids.
        metadata: one dict per item (see the module docstring).
    """

    vectors: np.ndarray
    ids: list[str]
    metadata: list[dict[str, Any]]


def item_path(dataset: MultimodalDataset, sample: Sample, modality: str) -> str | None:
    """The file a sample's modality came from, when known (manifests, Flickr8k images): an
    absolute path with symbolic links kept (a link to the data stays valid when the data
    behind it moves)."""
    files = sample.meta.get("files")
    if isinstance(files, dict) and isinstance(files.get(modality), str):
        return os.path.abspath(files[modality])
    root = getattr(dataset, "root", None)
    image = sample.meta.get("image")
    if root is not None and isinstance(image, str) and modality == "image":
        candidate = Path(root) / "images" / image
        if candidate.is_file():
            return os.path.abspath(candidate)
    return None


def _meta(
    dataset: MultimodalDataset, sample: Sample, modality: str, text: str | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"modality": modality, "example": sample.id}
    path = item_path(dataset, sample, modality)
    if path is not None:
        meta["path"] = path
    if text is not None:
        meta["text"] = text
    captions = sample.meta.get("captions")
    if modality == "image" and isinstance(captions, list | tuple):
        meta["captions"] = [str(c) for c in captions if str(c)]
    if modality != "image" and "image" in sample.modalities:
        image_path = item_path(dataset, sample, "image")
        if image_path is not None:
            meta["image_path"] = image_path
    return meta


@torch.no_grad()
def embed_dataset(
    model: JointEmbeddingModel,
    dataset: MultimodalDataset,
    modalities: Sequence[str],
    *,
    limit: int | None = None,
    batch_size: int = 32,
) -> dict[str, Embedded]:
    """Embed ``modalities`` of the first ``limit`` examples of ``dataset``.

    Each example is decoded once; an example missing a modality gives no item for it.

    Returns:
        modality -> :class:`Embedded`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"embed_dataset: 'batch_size' must be an int >= 1, got {batch_size!r}.")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    schema = dataset.schema.select(list(modalities))
    parts: dict[str, tuple[list[np.ndarray], list[str], list[dict[str, Any]]]] = {
        m: ([], [], []) for m in modalities
    }
    model.eval()
    starts = range(0, count, batch_size)
    for start in progress(starts, desc=f"embedding {dataset.name}", unit="batches"):
        samples = [dataset[i] for i in range(start, min(count, start + batch_size))]
        batch = collate(samples, schema)
        for m in modalities:
            vectors, ids, meta = parts[m]
            if schema[m].kind is ModalityKind.TEXT:
                rows = [(s, r) for s in samples for r in sample_text_rows(s, m)]
                if not rows:
                    continue
                texts = [r.text for _, r in rows]
                z = model.encode(m, ModalityBatch(texts, torch.ones(len(texts), dtype=torch.bool)))
                for s, r in rows:
                    ids.append(r.id)
                    meta.append(_meta(dataset, s, m, r.text))
            else:
                keep = [i for i, s in enumerate(samples) if s.modalities.get(m) is not None]
                if not keep:
                    continue
                z = model.encode(m, batch[m].index(torch.tensor(keep)))  # (b, D)
                for i in keep:
                    ids.append(samples[i].id)
                    meta.append(_meta(dataset, samples[i], m, None))
            vectors.append(z.float().cpu().numpy())
    return {
        m: Embedded(
            np.concatenate(v) if v else np.zeros((0, model.dim), np.float32), list(ids), meta
        )
        for m, (v, ids, meta) in parts.items()
    }


def write_embeddings(
    folder: str | os.PathLike[str],
    embedded: dict[str, Embedded],
    model: JointEmbeddingModel,
    *,
    checkpoint: str | os.PathLike[str],
    source: str,
    split: str | None,
) -> dict[str, int]:
    """Write ``embedded`` as an embeddings folder (see the module); returns the counts."""
    out = Path(folder)
    counts: dict[str, int] = {}
    for m, e in embedded.items():
        sub = out / m
        sub.mkdir(parents=True, exist_ok=True)
        np.save(sub / VECTORS_FILE, e.vectors)
        atomic_write_text(sub / IDS_FILE, json.dumps(e.ids))
        atomic_write_text(sub / METADATA_FILE, json.dumps(e.metadata))
        counts[m] = len(e.ids)
    manifest = {
        "format": EMBEDDINGS_FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint": str(Path(checkpoint).resolve()),
        "model": model.fingerprint(),
        "model_modalities": model.modalities,
        "dim": model.dim,
        "source": source,
        "split": split,
        "counts": counts,
    }
    atomic_write_text(out / EMBEDDINGS_FILE, json.dumps(manifest, indent=1) + "\n")
    return counts


EMBED_AGAIN = "Run `polymodal embed CHECKPOINT DATA -o FOLDER` again."
# embeddings.json keys that `polymodal index build` reads: key -> (check, expected)
_MANIFEST_TYPES: dict[str, tuple[Any, str]] = {
    "checkpoint": (lambda v: isinstance(v, str) and bool(v), "a checkpoint path"),
    "model": (lambda v: isinstance(v, str), "a model fingerprint (a string)"),
    "model_modalities": (
        lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v),
        "a list of modality names",
    ),
    "dim": (lambda v: _count(v) and v >= 1, "an integer >= 1"),
    "counts": (
        lambda v: isinstance(v, dict) and all(_count(n) for n in v.values()),
        "an object of modality -> item count",
    ),
}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_embeddings(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``embeddings.json`` of a folder written by :func:`write_embeddings`, checked:
    an empty, undecodable or modified one raises a :class:`CheckpointError` naming it."""
    path = Path(folder) / EMBEDDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {folder} is not a folder written by `polymodal embed` (or "
            "the run did not finish). Run `polymodal embed CHECKPOINT DATA -o FOLDER` first."
        )
    manifest = read_json_object(path, EMBED_AGAIN)
    if manifest.get("format") != EMBEDDINGS_FORMAT:
        raise CheckpointError(
            f"{path} is not a polymodal embeddings manifest (its 'format' is "
            f"{manifest.get('format')!r}, not {EMBEDDINGS_FORMAT!r}). {EMBED_AGAIN}"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {manifest.get('format_version')!r}, but this version "
            f"of polymodal reads format_version {FORMAT_VERSION}. {EMBED_AGAIN}"
        )
    for key, (ok, expected) in _MANIFEST_TYPES.items():
        if not ok(manifest.get(key)):
            raise CheckpointError(
                f"{path}: {key!r} must be {expected}, got {manifest.get(key)!r:.100}; the file "
                f"was modified. {EMBED_AGAIN}"
            )
    return manifest


def read_embedded(
    folder: str | os.PathLike[str], modality: str, manifest: dict[str, Any]
) -> Embedded:
    """One modality's items of an embeddings folder (``manifest``: its
    :func:`read_embeddings`), every file checked against it and named when it fails."""
    sub = Path(folder) / modality
    missing = [n for n in (VECTORS_FILE, IDS_FILE, METADATA_FILE) if not (sub / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The embeddings folder {sub} is incomplete: {missing} missing. {EMBED_AGAIN}"
        )
    count, dim = int(manifest["counts"][modality]), int(manifest["dim"])

    def bad(file: Path, what: str) -> CheckpointError:
        return CheckpointError(f"{file} {what}. {EMBED_AGAIN}")

    ids = read_json(sub / IDS_FILE, EMBED_AGAIN)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad(sub / IDS_FILE, "must hold a list of item ids (strings); it was modified")
    if len(ids) != count or len(set(ids)) != count:
        got = f"{len(ids)} ids" + (", some repeated" if len(set(ids)) != len(ids) else "")
        raise bad(sub / IDS_FILE, f"holds {got}, but {EMBEDDINGS_FILE} counts {count} items")
    metadata = read_json(sub / METADATA_FILE, EMBED_AGAIN)
    if not isinstance(metadata, list) or not all(isinstance(m, dict) for m in metadata):
        raise bad(sub / METADATA_FILE, "must hold a list of objects (one per item)")
    if len(metadata) != count:
        raise bad(sub / METADATA_FILE, f"holds {len(metadata)} entries, not {count}")
    file = sub / VECTORS_FILE
    try:
        vectors = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        what = f"is not a readable .npy array ({exc}); it was cut short or modified"
        raise bad(file, what) from None
    if vectors.dtype.kind != "f" or vectors.shape != (count, dim):
        raise bad(
            file,
            f"holds a {vectors.dtype} array of shape {vectors.shape}, but {EMBEDDINGS_FILE} "
            f"says {count} float vectors of {dim} dims",
        )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)  # (N,)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise bad(file, f"row {row} (id {ids[row]!r}) holds NaN or infinite values")
    return Embedded(vectors, ids, metadata)


__all__ = [
    "EMBEDDINGS_FILE",
    "EMBEDDINGS_FORMAT",
    "FORMAT_VERSION",
    "Embedded",
    "embed_dataset",
    "item_path",
    "read_embedded",
    "read_embeddings",
    "write_embeddings",
]
