"""The default index: exact brute-force search with torch alone (:class:`ExactIndex`).

The search is a blocked matrix product with the top-k selection fused into it: a block
of ``query_block`` queries is scored against ``chunk_size`` stored vectors at a time into
one preallocated score buffer (8 MB by default, so no allocation or page faults per
chunk), and each block of scores is reduced to its candidates while it is still in cache.
Selecting the top k of every row with ``torch.topk`` costs about as much as the product
itself at small k, so the selection works on group maxima instead:

1. the chunk's C columns are split into ``g`` strided groups (column ``j + t * C/g`` is in
   group ``j``), and one vectorised ``amax`` gives each row's C/g group maxima;
2. the first chunk of a query block takes the top k groups by their maximum, and the
   top k of their ``k * g`` scores: a top-k element lies in a group whose maximum is at
   least the k-th best score, so no top-k element is in a group outside the top k groups;
3. every later chunk only looks at the groups whose maximum beats the row's current k-th
   best score (few, once a few chunks have been seen) and merges their scores into the
   running top k.

The scores returned are exactly the top k of ``queries @ vectors.T`` as torch computes
them chunk by chunk; among equal scores, which index is returned is not specified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polymodal.retrieval.index import Index, _check_int

#: Score columns per group: each row of a chunk's scores is reduced to C/GROUP group
#: maxima before anything is selected.
GROUP = 16


class ExactIndex(Index):
    """Brute-force search: blocked ``queries @ vectors.T`` with a fused top-k selection.

    Args:
        dim, metric, modalities, model: see :class:`Index`.
        chunk_size: how many stored vectors are scored at once.
        query_block: how many queries are scored at once; a search holds one
            ``query_block x chunk_size`` float32 score buffer (8 MB by default) plus
            ``O(Q * k)`` for the results, however large the collection.
    """

    kind = "exact"

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "cosine",
        modalities: Sequence[str] | None = None,
        model: str | None = None,
        chunk_size: int = 4096,
        query_block: int = 512,
    ) -> None:
        super().__init__(dim, metric=metric, modalities=modalities, model=model)
        self.chunk_size = _check_int("ExactIndex", "chunk_size", chunk_size)
        self.query_block = _check_int("ExactIndex", "query_block", query_block)

    def _search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        vectors = self.vectors  # (N, D)
        chunk = min(self.chunk_size, vectors.shape[0])
        block = min(self.query_block, q.shape[0])
        buffer = q.new_empty(block * chunk)  # one score buffer, reused for every chunk
        out_scores = q.new_empty(q.shape[0], k)  # (Q, k)
        out_indices = torch.empty(q.shape[0], k, dtype=torch.long)
        for qs in range(0, q.shape[0], block):
            queries = q[qs : qs + block]  # (m, D)

            def scores_of(start: int, queries: Tensor = queries) -> Tensor:
                rows = vectors[start : start + chunk]  # (C, D)
                out = buffer[: queries.shape[0] * rows.shape[0]].view(-1, rows.shape[0])
                return torch.mm(queries, rows.T, out=out)  # (m, C)

            best = _merge_chunk(scores_of(0), 0, k, None)
            for start in range(chunk, vectors.shape[0], chunk):
                best = _merge_chunk(scores_of(start), start, k, best)
            out_scores[qs : qs + block] = best[0]
            out_indices[qs : qs + block] = best[1]
        return out_scores, out_indices

    def _params(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size, "query_block": self.query_block}


def _merge_chunk(
    scores: Tensor, offset: int, k: int, best: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor]:
    """The running top k merged with one chunk's scores.

    Args:
        scores: the chunk's scores; column ``j`` is stored vector ``offset + j``.
        offset: the position of the chunk's first vector.
        k: how many to keep (the result has ``min(k, columns seen)`` columns).
        best: the running (scores, indices), best first, or ``None`` for the first chunk.

    Shape:
        scores: (m, C); best: (m, <=k) each; output: (m, <=k) each, best first.
    """
    m, n = scores.shape
    first = best is None or best[0].shape[1] < k or not bool(torch.isfinite(best[0][:, -1]).all())
    g = GROUP
    if n % g or (first and n < 4 * k * g):  # a small or ragged chunk: a plain top-k
        indices = torch.arange(offset, offset + n).expand(m, n)
        if best is not None:
            scores = torch.cat([best[0], scores], dim=1)
            indices = torch.cat([best[1], indices], dim=1)
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        return top.values, indices.gather(1, top.indices)
    w = n // g
    steps = torch.arange(0, n, w)  # (g,)
    maxima = scores.view(m, g, w).amax(dim=1)  # (m, w): group j holds columns j + t*w
    if first or best is None:
        groups = maxima.topk(k, dim=1, sorted=False).indices  # (m, k)
        cols = (groups[:, :, None] + steps).view(m, k * g)  # (m, k*g)
        cand_scores = scores.gather(1, cols)
        cand_indices = cols + offset
        if best is not None:
            cand_scores = torch.cat([best[0], cand_scores], dim=1)
            cand_indices = torch.cat([best[1], cand_indices], dim=1)
        top = cand_scores.topk(k, dim=1)
        return top.values, cand_indices.gather(1, top.indices)
    # Only groups whose maximum beats the row's k-th best can change its top k, and in
    # them only the scores that beat it.
    threshold = best[0][:, -1]  # (m,)
    hit_rows, hit_groups = (maxima > threshold[:, None]).nonzero(as_tuple=True)  # (P,) each
    if hit_rows.numel() == 0:
        return best
    cols = hit_groups[:, None] + steps  # (P, g)
    hit_scores = scores.view(-1).take(hit_rows[:, None] * n + cols)  # (P, g)
    which, member = (hit_scores > threshold[hit_rows, None]).nonzero(as_tuple=True)  # (E,)
    rows = hit_rows[which]  # (E,) non-decreasing, as nonzero lists row-major
    counts = torch.bincount(rows, minlength=m)  # (m,) new scores per row
    slot = torch.arange(rows.numel()) - (counts.cumsum(0) - counts)[rows]  # (E,)
    width = int(counts.max())
    padded_scores = scores.new_full((m, width), -math.inf)
    padded_indices = torch.full((m, width), -1, dtype=torch.long)
    padded_scores[rows, slot] = hit_scores[which, member]
    padded_indices[rows, slot] = cols[which, member] + offset
    # the running best comes first and is finite, so -inf padding never displaces it
    cand_scores = torch.cat([best[0], padded_scores], dim=1)  # (m, k + width)
    cand_indices = torch.cat([best[1], padded_indices], dim=1)
    top = cand_scores.topk(k, dim=1)
    return top.values, cand_indices.gather(1, top.indices)
