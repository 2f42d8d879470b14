"""Retrieval metrics from a similarity matrix: recall@K, median/mean rank, mAP.

A query may have several relevant items (an image has five captions), and an item
several relevant queries.  Ranks are 1-based positions in the list of items sorted by
decreasing similarity; ties keep the items' order (a stable sort), so results are
deterministic.

* ``r@K``: the fraction of queries with at least one relevant item in the top K.
* ``median_rank`` / ``mean_rank``: of the best-ranked relevant item of each query
  (the median of an even count is the mean of the two middle values).
* ``map``: mean over queries of the average precision over all their relevant items.

:func:`retrieval_metrics` computes both directions (queries -> items and items ->
queries) of one similarity matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Relevance = Tensor | Sequence[Sequence[int]]


def relevance_matrix(relevant: Relevance, num_queries: int, num_items: int) -> Tensor:
    """Ground truth as a (Q, N) bool matrix.

    Args:
        relevant: either a (Q, N) bool tensor, or for each query the list of indices of
            its relevant items (e.g. ``[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], ...]`` for five
            captions per image).
    """
    if isinstance(relevant, Tensor):
        if relevant.dtype != torch.bool or tuple(relevant.shape) != (num_queries, num_items):
            raise ValueError(
                f"The relevance tensor must be a ({num_queries}, {num_items}) bool tensor "
                f"matching sim, got shape {tuple(relevant.shape)} and dtype {relevant.dtype}."
            )
        return relevant.cpu()
    if isinstance(relevant, str) or len(relevant) != num_queries:
        raise ValueError(
            f"query_to_items must hold one list of relevant item indices per query "
            f"({num_queries}), got {type(relevant).__name__} of length {len(relevant)}."
        )
    out = torch.zeros(num_queries, num_items, dtype=torch.bool)
    for q, items in enumerate(relevant):
        for i in items:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_items:
                raise ValueError(
                    f"query_to_items[{q}] holds {i!r}, but item indices must be ints in "
                    f"[0, {num_items}) (the columns of sim)."
                )
            out[q, i] = True
    return out


def rank_metrics(
    sim: Tensor,
    relevant: Relevance,
    *,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@K, median rank, mean rank and mAP of one retrieval direction.

    Args:
        sim: similarity of every query (row) to every item (column); higher is better.
        relevant: the ground truth (see :func:`relevance_matrix`); every query needs at
            least one relevant item.
        ks: the cut-offs K of ``r@K``.
        chunk_size: queries ranked at once (bounds memory to ``chunk_size * N``).

    Returns:
        ``{"r@1": ..., "r@5": ..., "r@10": ..., "median_rank": ..., "mean_rank": ...,
        "map": ...}``; recalls and mAP are fractions in [0, 1].

    Shape:
        sim: (Q, N).
        relevant: (Q, N) bool, or Q lists of item indices.
    """
    if not isinstance(sim, Tensor) or sim.dim() != 2 or sim.numel() == 0:
        shape = tuple(sim.shape) if isinstance(sim, Tensor) else type(sim).__name__
        raise ValueError(f"'sim' must be a non-empty (Q, N) tensor, got {shape}.")
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"'ks' must be a non-empty list of ints >= 1, got {ks!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"'chunk_size' must be an int >= 1, got {chunk_size!r}.")
    num_queries, num_items = sim.shape
    rel = relevance_matrix(relevant, num_queries, num_items)  # (Q, N)
    empty = (~rel.any(dim=1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(
            f"{empty.numel()} queries have no relevant item (first: query {int(empty[0])}); "
            "every query needs at least one for ranks and recall to be defined. Drop those "
            "rows of sim, or fix the ground truth."
        )
    sim = sim.detach().float().cpu()
    positions = torch.arange(1, num_items + 1, dtype=torch.float64)  # (N,)
    first_ranks: list[Tensor] = []
    precisions: list[Tensor] = []
    for start in range(0, num_queries, chunk_size):
        block = sim[start : start + chunk_size]  # (q, N)
        order = block.argsort(dim=1, descending=True, stable=True)  # (q, N)
        hits = rel[start : start + chunk_size].gather(1, order)  # (q, N) bool, ranked
        first_ranks.append(hits.to(torch.int8).argmax(dim=1) + 1)  # first True, 1-based
        cum_hits = hits.cumsum(dim=1, dtype=torch.float64)  # relevant items within top r
        ap = (cum_hits / positions * hits).sum(dim=1) / hits.sum(dim=1)  # (q,)
        precisions.append(ap)
    ranks = torch.cat(first_ranks).double()  # (Q,)
    out = {f"r@{k}": float((ranks <= k).double().mean()) for k in ks}
    out["median_rank"] = float(ranks.quantile(0.5))
    out["mean_rank"] = float(ranks.mean())
    out["map"] = float(torch.cat(precisions).mean())
    return out


def retrieval_metrics(
    sim: Tensor,
    query_to_items: Relevance,
    *,
    prefixes: tuple[str, str] = ("i2t", "t2i"),
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Both directions of retrieval metrics for one similarity matrix.

    Row queries retrieve column items (named with ``prefixes[0]``, e.g. ``"i2t_r@1"``),
    and column items retrieve row queries through ``sim.T`` with the transposed ground
    truth (``prefixes[1]``, e.g. ``"t2i_median_rank"``).

    Args:
        sim: similarities, e.g. images (rows) x captions (columns).
        query_to_items: for each row, its relevant columns (see :func:`relevance_matrix`).
        prefixes: names of the row -> column and column -> row directions.
        ks: the cut-offs K of ``r@K``.

    Returns:
        ``{f"{p}_{name}": value}`` for each prefix ``p`` and each name of
        :func:`rank_metrics` (``r@K``, ``median_rank``, ``mean_rank``, ``map``).

    Shape:
        sim: (Q, N).
        query_to_items: (Q, N) bool, or Q lists of column indices.
    """
    if (
        not isinstance(prefixes, tuple | list)
        or len(prefixes) != 2
        or not all(isinstance(p, str) and p for p in prefixes)
    ):
        raise ValueError(
            f"'prefixes' must be two non-empty names (rows -> columns, columns -> rows), "
            f"e.g. ('i2t', 't2i'), got {prefixes!r}."
        )
    if not isinstance(sim, Tensor) or sim.dim() != 2:
        shape = tuple(sim.shape) if isinstance(sim, Tensor) else type(sim).__name__
        raise ValueError(f"'sim' must be a (Q, N) tensor, got {shape}.")
    rel = relevance_matrix(query_to_items, sim.shape[0], sim.shape[1])  # (Q, N)
    out: dict[str, float] = {}
    for prefix, s, r in ((prefixes[0], sim, rel), (prefixes[1], sim.T, rel.T)):
        try:
            metrics = rank_metrics(s, r, ks=ks)
        except ValueError as exc:
            raise ValueError(f"{prefix} direction: {exc}") from exc
        out.update({f"{prefix}_{name}": value for name, value in metrics.items()})
    return out
