"""Embedding indexes: add vectors with ids and metadata, search by similarity, save, load.

Two implementations share one API (:class:`Index`):

* :class:`ExactIndex`, the default, needs nothing beyond torch: brute-force search by a
  blocked matrix product with the top-k selection fused into it (near the machine's
  matmul rate; blocking bounds the memory a search over a large collection takes).
* :class:`FaissIndex` wraps a FAISS index (flat, IVF, HNSW or IVF-PQ) for large
  collections; it needs the optional ``faiss`` dependency (``pip install
  "polymodal[retrieval]"``), which is imported only when such an index is built or loaded.

Vectors are stored as float32; with ``metric="cosine"`` (the default) they are
L2-normalised on the way in, so scores are cosine similarities; with ``metric="ip"``
they are kept as given and scores are inner products.

An index records which modality its items are (``add(..., modality="image")``) and,
optionally, which modalities share the embedding space (``modalities=("image", "text")``):
a query that declares a modality outside that set is rejected.  ``save(folder)`` writes
the vectors, ids and metadata plus an ``index.json`` manifest (kind, dim, count, modality,
the caller's model fingerprint, format version); :func:`load_index` reads it back.

Which file holds what: here :class:`Index`, :class:`SearchResult` and the file names;
:class:`ExactIndex` in ``exact.py``, :class:`FaissIndex` and ``FAISS_KINDS`` in
``faiss_index.py``, :func:`load_index` in ``load.py``.  Those import this module, so this
one re-exports their names on first use (``from polymodal.retrieval.index import
ExactIndex`` keeps working, with no import cycle).
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from polymodal.retrieval.exact import ExactIndex as ExactIndex
    from polymodal.retrieval.faiss_index import FAISS_KINDS as FAISS_KINDS
    from polymodal.retrieval.faiss_index import FaissIndex as FaissIndex
    from polymodal.retrieval.load import load_index as load_index

#: Version of the on-disk layout written by :meth:`Index.save`.
FORMAT_VERSION = 1
MANIFEST_FILE = "index.json"
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.json"
METADATA_FILE = "metadata.json"
FAISS_FILE = "faiss.index"

METRICS = ("cosine", "ip")

# Names whose modules import this one: re-exported on first use, not at import (no cycle).
_MOVED = {
    "ExactIndex": "polymodal.retrieval.exact",
    "FaissIndex": "polymodal.retrieval.faiss_index",
    "FAISS_KINDS": "polymodal.retrieval.faiss_index",
    "load_index": "polymodal.retrieval.load",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MOVED])


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
    row = first_nonfinite_row(out)
    if row is not None:
        raise ValueError(
            f"{owner}: {param}[{row}] contains NaN or infinite values (after conversion to "
            "float32); its scores would be NaN, which sorts before every real score. Drop "
            "that row, or fix the embedding that produced it."
        )
    return out


def first_nonfinite_row(x: Tensor) -> int | None:
    """The first row of the (N, D) ``x`` holding a NaN or an infinity, else ``None``."""
    finite = torch.isfinite(x).all(dim=1)  # (N,)
    return None if bool(finite.all()) else int((~finite).nonzero()[0])


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
            if n and not bool(torch.isfinite(norms).all()):
                row = int((~torch.isfinite(norms)).nonzero()[0])
                raise ValueError(
                    f"{owner}: vectors[{row}] is too large for float32 (its norm overflows); "
                    "scale the embeddings down."
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
