"""Reading a saved index back (:func:`load_index`), whichever kind wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from polymodal.retrieval.exact import ExactIndex
from polymodal.retrieval.faiss_index import FaissIndex
from polymodal.retrieval.index import (
    FAISS_FILE,
    FORMAT_VERSION,
    IDS_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    VECTORS_FILE,
    Index,
)

_MANIFEST_KEYS = ("format_version", "kind", "dim", "count", "metric", "modality", "model")


def load_index(folder: str | Path, *, expect_model: str | None = None) -> Index:
    """Read an index written by :meth:`Index.save`.

    Args:
        folder: the folder ``save`` wrote.
        expect_model: if given, the model fingerprint the index must have been built
            with; an index from another model raises ``ValueError``.

    Raises:
        FileNotFoundError: the folder or one of its files is missing (named).
        ValueError: an unknown format version, another model, or inconsistent files.
        ImportError: a FAISS index without ``faiss`` installed.
    """
    path = Path(folder)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        what = "folder does not exist" if not path.is_dir() else f"{MANIFEST_FILE} is missing"
        raise FileNotFoundError(
            f"load_index: {manifest_path} not found ({what}). Pass a folder written by "
            "Index.save(folder)."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"load_index: {manifest_path} is not valid JSON ({exc}).") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"load_index: {manifest_path} must hold a JSON object.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"load_index: {manifest_path} has format_version {version!r}, but this version "
            f"of polymodal reads format_version {FORMAT_VERSION}. Rebuild the index with "
            "this version (or use the polymodal version that wrote it)."
        )
    missing_keys = [key for key in _MANIFEST_KEYS if key not in manifest]
    if missing_keys:
        raise ValueError(f"load_index: {manifest_path} lacks the keys {missing_keys}.")
    if expect_model is not None and manifest["model"] != expect_model:
        raise ValueError(
            f"load_index: the index in {path} was built with model {manifest['model']!r}, "
            f"but expect_model={expect_model!r}. Rebuild the index with this model's "
            "embeddings, or load the model that built it."
        )
    kind = manifest["kind"]
    if kind not in (ExactIndex.kind, FaissIndex.kind):
        raise ValueError(
            f"load_index: {manifest_path} has kind {kind!r}; expected one of "
            f"{[ExactIndex.kind, FaissIndex.kind]}."
        )
    needed = [VECTORS_FILE, IDS_FILE, METADATA_FILE]
    if kind == FaissIndex.kind:
        needed.append(FAISS_FILE)
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"load_index: the index folder {path} is incomplete: {missing} "
            f"{'are' if len(missing) > 1 else 'is'} missing. Save the index again."
        )

    common = {
        "metric": manifest["metric"],
        "modalities": manifest.get("modalities"),
        "model": manifest["model"],
    }
    params = dict(manifest.get("params") or {})
    index: Index
    if kind == ExactIndex.kind:
        index = ExactIndex(manifest["dim"], **common, **params)
    else:
        index = FaissIndex(manifest["dim"], **common, **params)

    vectors = torch.from_numpy(np.load(path / VECTORS_FILE)).float()
    ids = json.loads((path / IDS_FILE).read_text())
    metadata = json.loads((path / METADATA_FILE).read_text())
    count, dim = manifest["count"], manifest["dim"]
    for name, ok, got in (
        (VECTORS_FILE, tuple(vectors.shape) == (count, dim), f"shape {tuple(vectors.shape)}"),
        (IDS_FILE, isinstance(ids, list) and len(ids) == count, f"{len(ids)} ids"),
        (
            METADATA_FILE,
            isinstance(metadata, list) and len(metadata) == count,
            f"{len(metadata)} entries",
        ),
    ):
        if not ok:
            raise ValueError(
                f"load_index: {path / name} has {got}, but {MANIFEST_FILE} says {count} "
                f"{dim}-d items; the folder is inconsistent. Save the index again."
            )
    index.modality = manifest["modality"]
    index._blocks = [vectors]
    index._ids = list(ids)
    index._id_set = set(ids)
    index._metadata = list(metadata)
    index._load_extra(path)
    return index
