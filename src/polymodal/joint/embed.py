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
from polymodal.data.collate import collate
from polymodal.data.dataset import MultimodalDataset, sample_text_rows
from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch, Sample
from polymodal.joint.model import JointEmbeddingModel

EMBEDDINGS_FILE = "embeddings.json"
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
    """The file a sample's modality came from, when known (manifests, Flickr8k images)."""
    files = sample.meta.get("files")
    if isinstance(files, dict) and isinstance(files.get(modality), str):
        return str(Path(files[modality]).resolve())
    root = getattr(dataset, "root", None)
    image = sample.meta.get("image")
    if root is not None and isinstance(image, str) and modality == "image":
        candidate = Path(root) / "images" / image
        if candidate.is_file():
            return str(candidate.resolve())
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
    for start in range(0, count, batch_size):
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
        np.save(sub / "vectors.npy", e.vectors)
        atomic_write_text(sub / "ids.json", json.dumps(e.ids))
        atomic_write_text(sub / "metadata.json", json.dumps(e.metadata))
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


def read_embeddings(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``embeddings.json`` of a folder written by :func:`write_embeddings`, checked."""
    path = Path(folder) / EMBEDDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {folder} is not a folder written by `polymodal embed` (or "
            "the run did not finish). Run `polymodal embed CHECKPOINT DATA -o FOLDER` first."
        )
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict) or manifest.get("format") != EMBEDDINGS_FORMAT:
        raise ValueError(f"{path} is not a polymodal embeddings manifest.")
    return manifest


__all__ = [
    "EMBEDDINGS_FILE",
    "EMBEDDINGS_FORMAT",
    "FORMAT_VERSION",
    "Embedded",
    "embed_dataset",
    "item_path",
    "read_embeddings",
    "write_embeddings",
]
