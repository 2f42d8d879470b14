"""A FAISS-backed index, flat, IVF or HNSW (:class:`FaissIndex`); ``faiss`` is optional
and imported only when such an index is built or loaded.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.progress import progress, show_library_logs
from polymodal.retrieval.index import FAISS_FILE, MANIFEST_FILE, Index, _check_int

logger = logging.getLogger(__name__)

FAISS_KINDS = ("flat", "ivf", "hnsw")
#: Vectors added to the FAISS structure at a time (one progress step; HNSW adds are slow).
ADD_CHUNK = 16384


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
                show_library_logs()
                logger.info(
                    "training the IVF index: %d cells on %d vectors ...", self.nlist, len(self)
                )
                start = time.perf_counter()
                index.train(vectors)
                logger.info("trained the IVF index in %.1f s", time.perf_counter() - start)
            self._index = index
        starts = range(self._index.ntotal, len(self), ADD_CHUNK)
        desc = f"building index (faiss {self.faiss_kind}, {len(self):,} vectors)"
        for start in progress(starts, desc=desc, unit="chunks"):
            self._index.add(np.ascontiguousarray(vectors[start : start + ADD_CHUNK]))
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
        file = folder / FAISS_FILE
        if file.stat().st_size == 0:
            raise ValueError(
                f"load_index: {file} is empty: it was cut short while being written or "
                "copied. Save the index again."
            )
        try:
            index = self._faiss.read_index(str(file))
        except (RuntimeError, MemoryError, ValueError):  # faiss's C++ errors, not for users
            raise ValueError(
                f"load_index: {file} is not a FAISS index file, or is truncated: FAISS cannot "
                "read it. Save the index again."
            ) from None
        ip = self._faiss.METRIC_INNER_PRODUCT
        if index.ntotal != len(self) or index.d != self.dim or index.metric_type != ip:
            raise ValueError(
                f"load_index: {file} holds {index.ntotal} {index.d}-d vectors (metric type "
                f"{index.metric_type}), but {MANIFEST_FILE} says {len(self)} {self.dim}-d "
                f"ones compared by inner product ({ip}); the folder is inconsistent. Save the "
                "index again."
            )
        self._index = index

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", kind={self.faiss_kind!r})"
