"""A FAISS-backed index, flat, IVF, HNSW or IVF-PQ (:class:`FaissIndex`); ``faiss`` is
optional and imported only when such an index is built or loaded.
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

FAISS_KINDS = ("flat", "ivf", "hnsw", "ivfpq")
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
            visited per query; needs at least ``nlist`` vectors when first built),
            ``"hnsw"`` (graph with ``M`` links per node, ``efSearch`` candidates per query)
            or ``"ivfpq"`` (IVF whose lists hold 4-bit product-quantised codes searched with
            FAISS's SIMD "fast scan", ``pq_m / 2`` bytes per vector, the best
            ``rerank * k`` re-scored exactly on the stored vectors).
        nlist, nprobe: IVF and IVF-PQ parameters; a rule of thumb is ``nlist ~ sqrt(N)``.
        M, efSearch, efConstruction: HNSW parameters (FAISS names); larger means better
            recall and a slower search (``efSearch``) or build (``M``, ``efConstruction``).
        pq_m: IVF-PQ sub-quantizers (4-bit codes), a divisor of ``dim``; ``None`` picks
            the largest divisor of ``dim`` not above ``dim // 2`` (2 dimensions a code).
        rerank: IVF-PQ candidates re-scored exactly per result (``k_factor`` in FAISS).

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
        efConstruction: int = 40,  # FAISS's name
        pq_m: int | None = None,
        rerank: int = 10,
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
        self.efConstruction = _check_int("FaissIndex", "efConstruction", efConstruction)
        if pq_m is None:
            pq_m = max(m for m in range(1, max(1, dim // 2) + 1) if dim % m == 0)
        self.pq_m = _check_int("FaissIndex", "pq_m", pq_m)
        if dim % self.pq_m:
            raise ValueError(
                f"FaissIndex: 'pq_m' must divide dim={dim} (each sub-quantizer codes "
                f"dim/pq_m dimensions), got {pq_m}. Pick a divisor, or leave it None."
            )
        self.rerank = _check_int("FaissIndex", "rerank", rerank)
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
                index.hnsw.efConstruction = self.efConstruction
            else:
                needed = self.nlist if self.faiss_kind == "ivf" else max(self.nlist, 256)
                if len(self) < needed:
                    raise ValueError(
                        f"FaissIndex(kind={self.faiss_kind!r}) trains nlist={self.nlist} cells"
                        f"{'' if self.faiss_kind == 'ivf' else ' and the PQ codebooks'}"
                        f" on the vectors present at the first search, so it needs at least "
                        f"{needed}, but holds only {len(self)}. Add more vectors first, lower "
                        f"nlist (about sqrt(N), e.g. {max(1, math.isqrt(len(self)))}), or use "
                        "kind='flat'."
                    )
                if self.faiss_kind == "ivf":
                    quantizer = faiss.IndexFlatIP(self.dim)
                    index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, ip)
                else:
                    spec = f"IVF{self.nlist},PQ{self.pq_m}x4fs,RFlat"
                    index = faiss.index_factory(self.dim, spec, ip)
                show_library_logs()
                label = "IVF" if self.faiss_kind == "ivf" else "IVF-PQ"
                logger.info(
                    "training the %s index: %d cells on %d vectors ...",
                    label,
                    self.nlist,
                    min(len(self), 256 * max(self.nlist, 256)),
                )
                start = time.perf_counter()
                # FAISS's k-means samples 256 vectors per centroid anyway; sampling here
                # also spares IVF-PQ the residuals of every vector
                limit = 256 * max(self.nlist, 256)
                sample = vectors
                if len(vectors) > limit:
                    rows = np.random.default_rng(0).choice(len(vectors), limit, replace=False)
                    sample = vectors[np.sort(rows)]
                index.train(sample)
                logger.info("trained the %s index in %.1f s", label, time.perf_counter() - start)
            self._index = index
        starts = range(self._index.ntotal, len(self), ADD_CHUNK)
        desc = f"building index (faiss {self.faiss_kind}, {len(self):,} vectors)"
        for start in progress(starts, desc=desc, unit="chunks"):
            self._index.add(np.ascontiguousarray(vectors[start : start + ADD_CHUNK]))
        if self.faiss_kind == "ivf":
            self._index.nprobe = self.nprobe
        elif self.faiss_kind == "ivfpq":
            faiss.extract_index_ivf(self._index).nprobe = self.nprobe
            self._index.k_factor = self.rerank
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
            "efConstruction": self.efConstruction,
            "pq_m": self.pq_m,
            "rerank": self.rerank,
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
