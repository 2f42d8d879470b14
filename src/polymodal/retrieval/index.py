"""Embedding indexes: add vectors with ids and metadata, search by similarity, save, load.

Two implementations share one API (:class:`Index`):

* :class:`ExactIndex`, the default, needs nothing beyond torch: brute-force search by a
  chunked matrix product and ``torch.topk``; chunking bounds the memory a search over a
  large collection takes.
* :class:`FaissIndex` wraps a FAISS index (flat, IVF or HNSW) for large collections; it
  needs the optional ``faiss`` dependency (``pip install "polymodal[retrieval]"``), which
  is imported only when such an index is built or loaded.

Vectors are stored as float32; with ``metric="cosine"`` (the default) they are
L2-normalised on the way in, so scores are cosine similarities; with ``metric="ip"``
they are kept as given and scores are inner products.

An index records which modality its items are (``add(..., modality="image")``) and,
optionally, which modalities share the embedding space (``modalities=("image", "text")``):
a query that declares a modality outside that set is rejected.  ``save(folder)`` writes
the vectors, ids and metadata plus an ``index.json`` manifest (kind, dim, count, modality,
the caller's model fingerprint, format version); :func:`load_index` reads it back.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

#: Version of the on-disk layout written by :meth:`Index.save`.
FORMAT_VERSION = 1
MANIFEST_FILE = "index.json"
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.json"
METADATA_FILE = "metadata.json"
FAISS_FILE = "faiss.index"

METRICS = ("cosine", "ip")
FAISS_KINDS = ("flat", "ivf", "hnsw")


@dataclass(frozen=True)
class SearchResult:
    """The ``k`` best items for each query, best first.

    Attributes:
        scores: (Q, k) float32 similarities (cosine or inner product).
        indices: (Q, k) int64 positions of the items in insertion order; ``-1`` (with score
            ``-inf``) where an approximate index found fewer than ``k`` items.
        ids: for each query, the ids of the items found (length ``k`` unless some were
            not found, in which case the missing ones, always last, are left out).
        metadata: for each query, the metadata dicts of the items in ``ids``.
    """

    scores: Tensor
    indices: Tensor
    ids: list[list[str]]
    metadata: list[list[dict[str, Any]]]


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "FaissIndex needs the 'faiss' package, which is not installed. Install it with "
            'pip install "polymodal[retrieval]" (or pip install faiss-cpu), or use '
            "ExactIndex, which needs nothing extra."
        ) from exc
    return faiss


def _check_int(owner: str, param: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {param!r} must be an int >= {minimum}, got {value!r}.")
    return value


def _as_matrix(owner: str, param: str, value: object) -> Tensor:
    """``value`` (tensor or array) as a CPU float32 (N, D) tensor."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.asarray(value))
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{owner}: {param!r} must be a torch.Tensor or numpy array of shape (N, D), got "
            f"{type(value).__name__}."
        )
    if value.dim() != 2:
        raise ValueError(
            f"{owner}: {param!r} must have shape (N, D), got {tuple(value.shape)}. "
            "For a single vector pass x.unsqueeze(0) (or x[None])."
        )
    out = value.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(out).all():
        raise ValueError(f"{owner}: {param!r} contains NaN or infinite values.")
    return out


class Index(ABC):
    """What every index offers: ``add``, ``search``, ``save``, ``len()``.

    Args:
        dim: the embedding size D every vector must have.
        metric: ``"cosine"`` (vectors L2-normalised on the way in) or ``"ip"`` (inner
            product of the vectors as given).
        modalities: the modalities whose embeddings share this space (e.g.
            ``("image", "text")`` for a CLIP-style model); items and declared queries must
            be one of them.  ``None`` accepts any.
        model: a fingerprint or name of the encoder that produced the vectors, stored in
            ``index.json`` so :func:`load_index` can reject an index from another model.

    Attributes:
        modality: the modality of the items (set by the first :meth:`add`), or ``None``
            while empty.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "cosine",
        modalities: Sequence[str] | None = None,
        model: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self.dim = _check_int(owner, "dim", dim)
        if metric not in METRICS:
            raise ValueError(f"{owner}: 'metric' must be one of {list(METRICS)}, got {metric!r}.")
        self.metric = metric
        if modalities is not None:
            if isinstance(modalities, str) or not all(isinstance(m, str) for m in modalities):
                raise TypeError(
                    f"{owner}: 'modalities' must be a list of modality names, got "
                    f"{modalities!r}. Write modalities=[{modalities!r}] for a single one."
                )
            modalities = sorted(set(modalities))
        self.modalities: list[str] | None = modalities
        if model is not None and not isinstance(model, str):
            raise TypeError(f"{owner}: 'model' must be a string or None, got {model!r}.")
        self.model = model
        self.modality: str | None = None
        self._blocks: list[Tensor] = []  # each (n_i, D) float32
        self._ids: list[str] = []
        self._id_set: set[str] = set()
        self._metadata: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ contents

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def vectors(self) -> Tensor:
        """(N, D) float32 stored vectors (L2-normalised for ``metric="cosine"``)."""
        if len(self._blocks) != 1:
            merged = torch.cat(self._blocks) if self._blocks else torch.empty(0, self.dim)
            self._blocks = [merged]
        return self._blocks[0]

    @property
    def ids(self) -> list[str]:
        """The item ids, in insertion order."""
        return list(self._ids)

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """The items' metadata dicts, in insertion order."""
        return list(self._metadata)

    def _check_modality(self, param: str, modality: str) -> None:
        owner = type(self).__name__
        if not isinstance(modality, str) or not modality:
            raise TypeError(f"{owner}: {param!r} must be a modality name, got {modality!r}.")
        if self.modalities is not None and modality not in self.modalities:
            raise ValueError(
                f"{owner}: {param}={modality!r} is not a modality this index was built for: "
                f"{self.modalities}. Build the index with modalities=[...] including "
                f"{modality!r}, or embed the data with a model that covers it."
            )

    def add(
        self,
        vectors: Tensor | np.ndarray,
        ids: Sequence[str],
        metadata: Sequence[dict[str, Any]] | None = None,
        *,
        modality: str,
    ) -> None:
        """Append items.

        Args:
            vectors: the items' embeddings.
            ids: one unique string id per row (unique across all adds).
            metadata: one JSON-serialisable dict per row (e.g. a caption, a file path);
                ``None`` gives every item ``{}``.
            modality: the items' modality; every add to one index must use the same one.

        Shape:
            vectors: (N, D) with D = ``self.dim``.
        """
        owner = type(self).__name__
        x = _as_matrix(owner, "vectors", vectors)
        if x.shape[1] != self.dim:
            raise ValueError(
                f"{owner}: vectors have {x.shape[1]} dims, but the index holds "
                f"{self.dim}-d vectors."
            )
        n = x.shape[0]
        self._check_modality("modality", modality)
        if self.modality is not None and modality != self.modality:
            raise ValueError(
                f"{owner}: this index holds {self.modality!r} items, got modality="
                f"{modality!r}. Build one index per item modality."
            )
        if isinstance(ids, str) or len(ids) != n or not all(isinstance(i, str) for i in ids):
            raise ValueError(
                f"{owner}: 'ids' must be a list of {n} strings (one per vector), got "
                f"{type(ids).__name__} of length {len(ids)}."
            )
        dupes = sorted({i for i in ids if i in self._id_set} | _duplicates(ids))
        if dupes:
            raise ValueError(
                f"{owner}: ids must be unique, but {dupes[:5]} "
                f"{'are' if len(dupes) > 1 else 'is'} repeated or already in the index."
            )
        if metadata is None:
            meta: list[dict[str, Any]] = [{} for _ in range(n)]
        else:
            if len(metadata) != n or not all(isinstance(m, dict) for m in metadata):
                raise ValueError(
                    f"{owner}: 'metadata' must be None or a list of {n} dicts (one per "
                    f"vector), got {type(metadata).__name__} of length {len(metadata)}."
                )
            for pos, m in enumerate(metadata):
                try:
                    json.dumps(m)
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"{owner}: metadata[{pos}] is not JSON-serialisable ({exc}); store "
                        "plain strings, numbers, lists and dicts."
                    ) from exc
            meta = [dict(m) for m in metadata]
        if self.metric == "cosine":
            norms = x.norm(dim=1)
            if n and bool((norms == 0).any()):
                row = int((norms == 0).nonzero()[0])
                raise ValueError(
                    f"{owner}: vectors[{row}] is all zeros, which has no cosine similarity; "
                    "drop it or use metric='ip'."
                )
            x = x / norms[:, None]
        if n == 0:
            return
        self.modality = modality
        self._blocks.append(x)
        self._ids.extend(ids)
        self._id_set.update(ids)
        self._metadata.extend(meta)

    # ------------------------------------------------------------------ search

    def search(
        self, queries: Tensor | np.ndarray, k: int, *, modality: str | None = None
    ) -> SearchResult:
        """The ``k`` most similar items for each query, best first.

        ``k`` larger than the index returns every item (``min(k, len(self))`` columns).

        Args:
            queries: query embeddings from the same model (normalised here for cosine).
            k: how many items per query.
            modality: the queries' modality, if known; it must be one of
                ``self.modalities`` when the index was built with them.

        Shape:
            queries: (Q, D) with D = ``self.dim``.
            output: scores and indices (Q, min(k, N)).
        """
        owner = type(self).__name__
        q = _as_matrix(owner, "queries", queries)
        if q.shape[1] != self.dim:
            raise ValueError(
                f"{owner}: query has {q.shape[1]} dims, but the index holds "
                f"{self.dim}-d vectors. Embed the queries with the model that built the "
                "index."
            )
        k = _check_int(owner, "k", k)
        if modality is not None:
            self._check_modality("modality", modality)
        if len(self) == 0:
            raise ValueError(f"{owner}: the index is empty; add vectors before searching.")
        if self.metric == "cosine":
            q = torch.nn.functional.normalize(q, dim=1)
        k = min(k, len(self))
        scores, indices = self._search(q, k)  # (Q, k), (Q, k)
        ids: list[list[str]] = []
        meta: list[list[dict[str, Any]]] = []
        for row in indices.tolist():
            found = [i for i in row if i >= 0]
            ids.append([self._ids[i] for i in found])
            meta.append([self._metadata[i] for i in found])
        return SearchResult(scores, indices, ids, meta)

    @abstractmethod
    def _search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(Q, D) prepared queries, 1 <= k <= len(self) -> float32 scores, int64 indices."""

    # ------------------------------------------------------------------ persistence

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The constructor arguments (besides the common ones) that rebuild this index."""

    def _save_extra(self, folder: Path) -> None:  # noqa: B027 - optional hook
        """Write files beyond vectors, ids and metadata."""

    def _load_extra(self, folder: Path) -> None:  # noqa: B027 - optional hook
        """Read what :meth:`_save_extra` wrote, after the common state is restored."""

    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` (created if needed) and return its path.

        Files: ``vectors.npy`` (N, D) float32, ``ids.json``, ``metadata.json``, any
        backend file (``faiss.index``), and last ``index.json``, the manifest
        :func:`load_index` reads first.
        """
        owner = type(self).__name__
        if len(self) == 0:
            raise ValueError(f"{owner}: the index is empty; add vectors before saving.")
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / VECTORS_FILE, self.vectors.numpy())
        (path / IDS_FILE).write_text(json.dumps(self._ids))
        (path / METADATA_FILE).write_text(json.dumps(self._metadata))
        self._save_extra(path)
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "dim": self.dim,
            "count": len(self),
            "metric": self.metric,
            "modality": self.modality,
            "modalities": self.modalities,
            "model": self.model,
            "params": self._params(),
        }
        (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        return path

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, count={len(self)}, metric={self.metric!r}, "
            f"modality={self.modality!r}, model={self.model!r})"
        )


def _duplicates(ids: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for i in ids:
        if i in seen:
            dupes.add(i)
        seen.add(i)
    return dupes


# --------------------------------------------------------------------------- exact


class ExactIndex(Index):
    """Brute-force search: chunked ``queries @ vectors.T`` and a running ``torch.topk``.

    Args:
        dim, metric, modalities, model: see :class:`Index`.
        chunk_size: how many stored vectors are scored at once; a search holds about
            ``Q * (chunk_size + 2k)`` extra floats however large the collection.
    """

    kind = "exact"

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "cosine",
        modalities: Sequence[str] | None = None,
        model: str | None = None,
        chunk_size: int = 65536,
    ) -> None:
        super().__init__(dim, metric=metric, modalities=modalities, model=model)
        self.chunk_size = _check_int("ExactIndex", "chunk_size", chunk_size)

    def _search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        vectors = self.vectors  # (N, D)
        best_scores = q.new_empty(q.shape[0], 0)  # (Q, <=k)
        best_indices = torch.empty(q.shape[0], 0, dtype=torch.long)
        for start in range(0, vectors.shape[0], self.chunk_size):
            chunk = vectors[start : start + self.chunk_size]  # (C, D)
            scores = q @ chunk.T  # (Q, C)
            top = scores.topk(min(k, chunk.shape[0]), dim=1)
            merged_scores = torch.cat([best_scores, top.values], dim=1)  # (Q, <=2k)
            merged_indices = torch.cat([best_indices, top.indices + start], dim=1)
            keep = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
            best_scores = keep.values
            best_indices = merged_indices.gather(1, keep.indices)
        return best_scores, best_indices

    def _params(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size}


# --------------------------------------------------------------------------- faiss


class FaissIndex(Index):
    """A FAISS index over inner products (cosine on L2-normalised vectors).

    The FAISS structure is built lazily at the first search (or save) from all vectors
    added so far (IVF trains its coarse quantizer on them then); later adds go into it
    without retraining.  The vectors are also kept as a tensor (``vectors``, saved as
    ``vectors.npy``), so the index can be rebuilt with other parameters.

    Args:
        dim, metric, modalities, model: see :class:`Index`.
        kind: ``"flat"`` (exact), ``"ivf"`` (inverted lists, ``nlist`` cells, ``nprobe``
            visited per query; needs at least ``nlist`` vectors when first built) or
            ``"hnsw"`` (graph with ``M`` links per node, ``efSearch`` candidates per query).
        nlist, nprobe: IVF parameters; a rule of thumb is ``nlist ~ sqrt(N)``.
        M, efSearch: HNSW parameters (FAISS names); larger means better recall, slower.

    Requires ``faiss`` (``pip install "polymodal[retrieval]"``).
    """

    kind = "faiss"

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        metric: str = "cosine",
        modalities: Sequence[str] | None = None,
        model: str | None = None,
        nlist: int = 100,
        nprobe: int = 10,
        M: int = 32,  # FAISS's name
        efSearch: int = 64,  # FAISS's name
    ) -> None:
        super().__init__(dim, metric=metric, modalities=modalities, model=model)
        if kind not in FAISS_KINDS:
            raise ValueError(
                f"FaissIndex: 'kind' must be one of {list(FAISS_KINDS)}, got {kind!r}."
            )
        self.faiss_kind = kind
        self.nlist = _check_int("FaissIndex", "nlist", nlist)
        self.nprobe = _check_int("FaissIndex", "nprobe", nprobe)
        self.M = _check_int("FaissIndex", "M", M, minimum=2)
        self.efSearch = _check_int("FaissIndex", "efSearch", efSearch)
        self._faiss = _import_faiss()
        self._index: Any = None

    def _build(self) -> Any:
        """The FAISS index, created (and trained) if needed, holding every stored vector."""
        faiss = self._faiss
        vectors = self.vectors.numpy()  # (N, D) float32, C-contiguous
        if self._index is None:
            ip = faiss.METRIC_INNER_PRODUCT
            if self.faiss_kind == "flat":
                index = faiss.IndexFlatIP(self.dim)
            elif self.faiss_kind == "hnsw":
                index = faiss.IndexHNSWFlat(self.dim, self.M, ip)
            else:
                if len(self) < self.nlist:
                    raise ValueError(
                        f"FaissIndex(kind='ivf') trains nlist={self.nlist} cells on the "
                        f"vectors present at the first search, but holds only {len(self)}. "
                        f"Add more vectors first, lower nlist (about sqrt(N), e.g. "
                        f"{max(1, math.isqrt(len(self)))}), or use kind='flat'."
                    )
                quantizer = faiss.IndexFlatIP(self.dim)
                index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, ip)
                index.train(vectors)
            self._index = index
        if self._index.ntotal < len(self):
            self._index.add(np.ascontiguousarray(vectors[self._index.ntotal :]))
        if self.faiss_kind == "ivf":
            self._index.nprobe = self.nprobe
        elif self.faiss_kind == "hnsw":
            self._index.hnsw.efSearch = self.efSearch
        return self._index

    def _search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        scores, indices = self._build().search(np.ascontiguousarray(q.numpy()), k)
        indices_t = torch.from_numpy(indices).long()
        scores_t = torch.from_numpy(scores).float()
        return scores_t.masked_fill(indices_t < 0, -math.inf), indices_t

    def _params(self) -> dict[str, Any]:
        return {
            "kind": self.faiss_kind,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "M": self.M,
            "efSearch": self.efSearch,
        }

    def _save_extra(self, folder: Path) -> None:
        self._faiss.write_index(self._build(), str(folder / FAISS_FILE))

    def _load_extra(self, folder: Path) -> None:
        index = self._faiss.read_index(str(folder / FAISS_FILE))
        if index.ntotal != len(self) or index.d != self.dim:
            raise ValueError(
                f"load_index: {folder / FAISS_FILE} holds {index.ntotal} {index.d}-d vectors, "
                f"but {MANIFEST_FILE} says {len(self)} {self.dim}-d ones; the folder is "
                "inconsistent. Save the index again."
            )
        self._index = index

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", kind={self.faiss_kind!r})"


# --------------------------------------------------------------------------- loading

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
