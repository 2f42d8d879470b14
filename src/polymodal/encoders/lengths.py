"""Running texts in groups of similar length: each group padded only to its own longest.

A batch of short texts with one long one would otherwise pay the long one's length for
every text.  :func:`length_groups` picks the groups (exactly, at the least padding plus
per-call cost); :func:`by_length` runs a function over them and puts the rows back in the
order given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def length_groups(lengths: list[int], overhead: int = 48) -> list[list[int]]:
    """Split sorted ``lengths`` into consecutive groups, each padded to its longest, at the
    least cost: a group of n texts padded to L costs ``overhead + n * L`` token slots (the
    overhead: one model call's fixed cost in token slots, ~48 for MiniLM on a CPU core).

    Exact, by dynamic programming over the cuts between distinct lengths (a cut between
    equal lengths never pays), so O(D^2) for D distinct lengths (<= ``max_length``).
    Returns the groups as lists of positions into ``lengths``.
    """
    ends = [
        j for j in range(1, len(lengths) + 1) if j == len(lengths) or lengths[j] != lengths[j - 1]
    ]
    # ends[k]: one past the last text of the k-th distinct length
    best = [0.0] + [float("inf")] * len(ends)  # best[k]: cost of the texts before ends[k-1]
    cut = [0] * (len(ends) + 1)
    for k in range(1, len(ends) + 1):
        end, width = ends[k - 1], lengths[ends[k - 1] - 1]
        for i in range(k):
            start = 0 if i == 0 else ends[i - 1]
            cost = best[i] + overhead + (end - start) * width
            if cost < best[k]:
                best[k], cut[k] = cost, i
    groups, k = [], len(ends)
    while k > 0:
        start = 0 if cut[k] == 0 else ends[cut[k] - 1]
        groups.append(list(range(start, ends[k - 1])))
        k = cut[k]
    return groups[::-1]


def by_length(
    lengths: list[int], run: Callable[[list[int], int], Tensor], overhead: int = 48
) -> Tensor:
    """``run(rows, width)`` over groups of rows of similar length, stacked in the given order.

    ``run`` gets the positions of one group and its longest length, and returns that
    group's states padded to that length.

    Shape:
        run's output: (G, width, E); output: (B, max(lengths), E), zeros past the width
        of each row's group.
    """
    longest = max(lengths)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    parts = []
    for group in length_groups([lengths[i] for i in order], overhead):
        rows = [order[j] for j in group]
        out = run(rows, lengths[rows[-1]])  # (G, L_g, E)
        parts.append(F.pad(out, (0, 0, 0, longest - out.shape[1])))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(parts)[inverse.to(parts[0].device)]  # (B, L, E), in the order given


__all__ = ["by_length", "length_groups"]
