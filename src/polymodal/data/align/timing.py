"""A stream's timing: rate, jitter and gaps (:func:`timing_stats`), and repeated times.

:func:`merge_duplicate_times` collapses rows that share a timestamp (sensors that deliver
in bursts stamp several rows with the same time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polymodal.data.align.checks import _as_times, _as_values
from polymodal.errors import unknown_name_error

MERGE_REDUCTIONS = ("mean", "first", "last")


@dataclass(frozen=True)
class StreamTiming:
    """The timing of one stream's timestamps (all in the timestamps' unit, seconds).

    Attributes:
        n: number of samples.
        start, end: first and last timestamp.
        rate: nominal rate, 1 / median interval between distinct timestamps (Hz).
        period: median interval between distinct timestamps.
        jitter: standard deviation of the intervals between consecutive samples
            (repeated timestamps count as intervals of 0).
        max_gap: the longest interval between consecutive samples.
        duplicates: how many samples repeat the previous timestamp.
    """

    n: int
    start: float
    end: float
    rate: float
    period: float
    jitter: float
    max_gap: float
    duplicates: int

    @property
    def duration(self) -> float:
        return self.end - self.start


def timing_stats(timestamps: Tensor | Sequence[float]) -> StreamTiming:
    """Measure rate, jitter and gaps of ``timestamps`` ((T,), non-decreasing, T >= 2)."""
    t = _as_times(timestamps, "timing_stats")
    if t.shape[0] < 2:
        raise ValueError(f"timing_stats: need at least 2 timestamps, got {t.shape[0]}.")
    d = t[1:] - t[:-1]
    if (d < 0).any():
        i = int((d < 0).nonzero()[0, 0])
        raise ValueError(
            f"timing_stats: timestamps go back at index {i + 1} "
            f"({float(t[i + 1])!r} < {float(t[i])!r}); sort them first."
        )
    pos = d[d > 0]
    if pos.numel() == 0:
        raise ValueError("timing_stats: all timestamps are equal; the stream has no duration.")
    period = float(pos.median())
    return StreamTiming(
        n=int(t.shape[0]),
        start=float(t[0]),
        end=float(t[-1]),
        rate=1.0 / period,
        period=period,
        jitter=float(d.std()) if d.numel() > 1 else 0.0,
        max_gap=float(d.max()),
        duplicates=int((d == 0).sum()),
    )


def merge_duplicate_times(
    values: Tensor, timestamps: Tensor, reduce: str = "mean"
) -> tuple[Tensor, Tensor]:
    """Collapse consecutive rows that share a timestamp into one row.

    Args:
        values: (T, C) or (T,).
        timestamps: (T,) seconds, non-decreasing.
        reduce: ``"mean"`` averages the rows (floating values), ``"first"``/``"last"`` keep
            one of them (any dtype, e.g. integer labels).

    Returns:
        ``(values, times)``: (U, C) or (U,), and (U,) float64 strictly increasing,
        U = number of distinct timestamps.
    """
    if reduce not in MERGE_REDUCTIONS:
        raise unknown_name_error("merge reduction", reduce, list(MERGE_REDUCTIONS))
    t = _as_times(timestamps, "merge_duplicate_times")
    v = _as_values(values, t.shape[0], "merge_duplicate_times")
    if t.shape[0] == 0:
        return v, t
    d = t[1:] - t[:-1]
    if (d < 0).any():
        i = int((d < 0).nonzero()[0, 0])
        raise ValueError(
            f"merge_duplicate_times: timestamps must be non-decreasing, but timestamp {i + 1} "
            f"({float(t[i + 1])!r}) goes back after {float(t[i])!r}. Sort the rows first."
        )
    new = torch.ones(t.shape[0], dtype=torch.bool)
    new[1:] = d > 0
    if bool(new.all()):
        return v, t
    group = new.long().cumsum(0) - 1  # (T,) index of each row's distinct time
    u = int(group[-1]) + 1
    times = t[new]
    if reduce == "first":
        return v[new], times
    if reduce == "last":
        last = torch.ones(t.shape[0], dtype=torch.bool)
        last[:-1] = d > 0
        return v[last], times
    if not v.is_floating_point():
        raise TypeError(
            f"merge_duplicate_times: reduce='mean' needs floating values, got {v.dtype}; "
            "use reduce='first' or 'last' for labels."
        )
    flat = v.reshape(v.shape[0], -1).to(torch.float64)
    sums = torch.zeros(u, flat.shape[1], dtype=torch.float64).index_add_(0, group, flat)
    counts = torch.bincount(group, minlength=u).to(torch.float64)
    merged = (sums / counts[:, None]).to(v.dtype).reshape(u, *v.shape[1:])
    return merged, times
