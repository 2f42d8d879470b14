"""The default index: exact brute-force search with torch alone (:class:`ExactIndex`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polymodal.retrieval.index import Index, _check_int


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
