"""Reading a saved index back (:func:`load_index`), whichever kind wrote it.

Every file read is checked, and named in the error when it fails: ``index.json`` (a JSON
object of the known format version, with every key and the right type of value),
``ids.json`` (unique strings), ``metadata.json`` (objects), ``vectors.npy`` (an ``.npy``
header, float32, the manifest's (count, dim) shape, as many bytes as that header implies,
finite rows, unit rows for a cosine index) and, by :class:`FaissIndex`, ``faiss.index``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.retrieval.exact import ExactIndex
from polymodal.retrieval.faiss_index import FaissIndex
from polymodal.retrieval.index import (
    FAISS_FILE,
    FORMAT_VERSION,
    IDS_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    METRICS,
    VECTORS_FILE,
    Index,
    first_nonfinite_row,
)

_MANIFEST_KEYS = ("format_version", "kind", "dim", "count", "metric", "modality", "model")
RESAVE = (
    "Build the index again: polymodal index build EMBEDDINGS -o FOLDER (in Python, "
    "Index.save(FOLDER))."
)
_UNIT_TOLERANCE = 1e-3  # |norm - 1| of a stored cosine vector (float32 rounding is ~1e-7)


def _bad(file: Path, what: str) -> ValueError:
    return ValueError(f"load_index: {file} {what}. {RESAVE}")


def load_index(folder: str | Path, *, expect_model: str | None = None) -> Index:
    """Read an index written by :meth:`Index.save`.

    Args:
        folder: the folder ``save`` wrote.
        expect_model: if given, the model fingerprint the index must have been built
            with; an index from another model raises ``ValueError``.

    Raises:
        FileNotFoundError: the folder or one of its files is missing (named).
        ValueError: an unknown format version, another model, or a file that is truncated,
            corrupt, inconsistent with ``index.json`` or holds non-finite vectors (named,
            with the row).
        ImportError: a FAISS index without ``faiss`` installed.
    """
    path = Path(folder)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        what = "folder does not exist" if not path.is_dir() else f"{MANIFEST_FILE} is missing"
        raise FileNotFoundError(
            f"load_index: {manifest_path} not found ({what}). Pass a folder written by "
            "polymodal index build (in Python, by Index.save(folder))."
        )
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise _bad(manifest_path, f"must hold a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"load_index: {manifest_path} has format_version {version!r}, but this version "
            f"of polymodal reads format_version {FORMAT_VERSION}. Rebuild the index with "
            "this version (or use the polymodal version that wrote it)."
        )
    missing_keys = [key for key in _MANIFEST_KEYS if key not in manifest]
    if missing_keys:
        raise _bad(manifest_path, f"lacks the keys {missing_keys}")
    if expect_model is not None and manifest["model"] != expect_model:
        raise ValueError(
            f"load_index: the index in {path} was built with model {manifest['model']!r}, "
            f"but expect_model={expect_model!r}. Rebuild the index with this model's "
            "embeddings, or load the model that built it."
        )
    kind = manifest["kind"]
    if kind not in (ExactIndex.kind, FaissIndex.kind):
        raise _bad(
            manifest_path,
            f"has kind {kind!r}; expected one of {[ExactIndex.kind, FaissIndex.kind]}",
        )
    _check_manifest(manifest, manifest_path)
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
    try:
        if kind == ExactIndex.kind:
            index = ExactIndex(manifest["dim"], **common, **params)
        else:
            index = FaissIndex(manifest["dim"], **common, **params)
    except (TypeError, ValueError) as exc:
        raise _bad(manifest_path, f"holds parameters no index can be built from ({exc})") from None

    count, dim = manifest["count"], manifest["dim"]
    ids = _read_ids(path / IDS_FILE, count, dim)
    metadata = _read_json(path / METADATA_FILE)
    if not isinstance(metadata, list) or len(metadata) != count:
        got = (
            f"{len(metadata)} entries"
            if isinstance(metadata, list)
            else f"a {type(metadata).__name__}"
        )
        raise _inconsistent(path / METADATA_FILE, got, count, dim)
    bad_meta = next((i for i, m in enumerate(metadata) if not isinstance(m, dict)), None)
    if bad_meta is not None:
        raise _bad(
            path / METADATA_FILE,
            f"entry {bad_meta} (id {ids[bad_meta]!r}) is {type(metadata[bad_meta]).__name__}, "
            "not an object",
        )
    vectors = _read_vectors(path / VECTORS_FILE, count, dim, manifest["metric"], ids)
    index.modality = manifest["modality"]
    index._blocks = [vectors]
    index._ids = ids
    index._id_set = set(ids)
    index._metadata = metadata
    index._load_extra(path)
    return index


def _read_json(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _bad(file, "is not UTF-8 text; it was damaged or replaced") from None
    if not text.strip():
        raise _bad(file, "is empty: it was cut short while being written or copied")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise _bad(file, f"is not valid JSON ({where}); it was cut short or modified") from None


def _check_manifest(manifest: dict[str, Any], file: Path) -> None:
    """The values of ``index.json`` have the types :meth:`Index.save` writes."""

    def count(v: Any, low: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    def optional_str(v: Any) -> bool:
        return v is None or isinstance(v, str)

    modalities = manifest.get("modalities")
    checks = {
        "dim": (count(manifest["dim"], 1), "an integer >= 1"),
        "count": (count(manifest["count"], 1), "an integer >= 1"),
        "metric": (manifest["metric"] in METRICS, f"one of {list(METRICS)}"),
        "modality": (isinstance(manifest["modality"], str), "a modality name"),
        "modalities": (
            modalities is None
            or (isinstance(modalities, list) and all(isinstance(m, str) for m in modalities)),
            "null or a list of modality names",
        ),
        "model": (optional_str(manifest["model"]), "null or a string"),
        "params": (isinstance(manifest.get("params") or {}, dict), "an object"),
    }
    for key, (ok, expected) in checks.items():
        if not ok:
            raise _bad(file, f"has {key}={manifest.get(key)!r}; expected {expected}")


def _inconsistent(file: Path, got: str, count: int, dim: int) -> ValueError:
    return ValueError(
        f"load_index: {file} has {got}, but {MANIFEST_FILE} says {count} {dim}-d items; the "
        "folder is inconsistent. Save the index again."
    )


def _read_ids(file: Path, count: int, dim: int) -> list[str]:
    ids = _read_json(file)
    if not isinstance(ids, list) or len(ids) != count:
        got = f"{len(ids)} ids" if isinstance(ids, list) else f"a {type(ids).__name__}"
        raise _inconsistent(file, got, count, dim)
    bad = next((i for i, x in enumerate(ids) if not isinstance(x, str)), None)
    if bad is not None:
        raise _bad(file, f"entry {bad} is {ids[bad]!r}, not a string id")
    if len(set(ids)) != len(ids):
        dupes = sorted(x for x, n in Counter(ids).items() if n > 1)
        raise _bad(file, f"repeats the ids {dupes[:5]}; ids must be unique")
    return ids


def _read_vectors(file: Path, count: int, dim: int, metric: str, ids: list[str]) -> Tensor:
    """``vectors.npy``: header, dtype, shape and size checked before the data is read."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
    except (ValueError, OSError) as exc:
        raise _bad(file, f"is not a .npy array file ({exc})") from None
    if dtype.kind != "f" or dtype.itemsize != 4:
        raise _bad(file, f"holds {dtype} values, but an index stores float32 vectors")
    if tuple(shape) != (count, dim):
        raise _inconsistent(file, f"shape {tuple(shape)}", count, dim)
    expected = offset + count * dim * 4
    if size < expected:
        raise _bad(
            file,
            f"is truncated: it has {size} bytes, but its header describes {expected} (it "
            "was cut short while being written or copied)",
        )
    if size > expected:
        raise _bad(file, f"has {size - expected} bytes after its array; it was modified")
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise _bad(file, f"cannot be read ({exc})") from None
    vectors = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))  # (N, D)
    row = first_nonfinite_row(vectors)
    if row is not None:
        raise _bad(
            file,
            f"row {row} (id {ids[row]!r}) holds NaN or infinite values; its scores would be "
            "NaN and rank first. The file was damaged or modified",
        )
    if metric == "cosine":
        norms = vectors.norm(dim=1)  # (N,)
        off = (norms - 1).abs() > _UNIT_TOLERANCE
        if bool(off.any()):
            row = int(off.nonzero()[0])
            raise _bad(
                file,
                f"row {row} (id {ids[row]!r}) has norm {float(norms[row]):.4g}, but a "
                f"cosine index stores unit vectors ({MANIFEST_FILE} says metric 'cosine'); "
                "the file was modified",
            )
    return vectors
