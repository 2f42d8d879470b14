"""Word timings: read GRID-style ``.align`` files (:func:`read_align_file`) and pool a
frame-rate stream inside each word (:func:`pool_intervals`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from polymodal.data.align.checks import _as_times, _as_values
from polymodal.errors import unknown_name_error

POOL_REDUCTIONS = ("mean", "max")


@dataclass(frozen=True)
class WordInterval:
    """One word's time span in seconds, ``[start, end)``."""

    start: float
    end: float
    word: str


def read_align_file(
    path: str | os.PathLike[str],
    unit: float = 1 / 25000,
    drop: Sequence[str] | None = ("sil", "sp"),
) -> list[WordInterval]:
    """Read a GRID ``.align`` file: one ``start end word`` line per word.

    Args:
        path: the ``.align`` file.
        unit: seconds per time unit of the file (GRID: 1/25,000 s).
        drop: words to leave out (silence and short pause by default); ``None`` keeps all.

    Returns:
        The words in file order, times in seconds.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Alignment file {str(p)!r} does not exist; pass the .align path.")
    if not unit > 0:
        raise ValueError(f"unit must be positive seconds per file unit, got {unit!r}")
    dropped = set(drop) if drop is not None else set()
    # Divide by a whole number of units per second when there is one (25000 for GRID), so
    # that times land on the same doubles as frame times ``k / fps`` (12250 / 25000 == 0.49,
    # whereas 12250 * (1 / 25000) == 0.49000000000000005).
    per_second = 1.0 / unit
    whole = round(per_second)
    exact = whole > 0 and abs(per_second - whole) <= 1e-9 * per_second
    out: list[WordInterval] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"{p}:{lineno}: expected 'start end word', got {line.strip()!r}.")
            try:
                s, e = float(parts[0]), float(parts[1])
            except ValueError:
                raise ValueError(
                    f"{p}:{lineno}: start and end must be numbers, got {line.strip()!r}."
                ) from None
            if e < s:
                raise ValueError(f"{p}:{lineno}: end {parts[1]} is before start {parts[0]}.")
            if parts[2] in dropped:
                continue
            if exact:
                out.append(WordInterval(s / whole, e / whole, parts[2]))
            else:
                out.append(WordInterval(s * unit, e * unit, parts[2]))
    return out


def _interval_bounds(
    intervals: Sequence[WordInterval] | Sequence[tuple[float, float]] | Tensor,
) -> Tensor:
    if isinstance(intervals, Tensor):
        b = intervals.to(torch.float64)
        if b.dim() != 2 or b.shape[1] != 2:
            raise ValueError(
                f"pool_intervals: an intervals tensor must be (W, 2) [start, end], "
                f"got shape {tuple(b.shape)}"
            )
    else:
        pairs: list[tuple[float, float]] = []
        for i, it in enumerate(intervals):
            if isinstance(it, WordInterval):
                pairs.append((it.start, it.end))
            elif isinstance(it, (tuple, list)) and len(it) >= 2:
                pairs.append((float(it[0]), float(it[1])))
            else:
                raise TypeError(
                    f"pool_intervals: interval {i} must be a WordInterval or a (start, end) "
                    f"pair, got {type(it).__name__}"
                )
        b = torch.tensor(pairs, dtype=torch.float64).reshape(-1, 2)
    bad = (b[:, 1] < b[:, 0]).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise ValueError(
            f"pool_intervals: interval {i} ends ({float(b[i, 1])!r}) before it starts "
            f"({float(b[i, 0])!r})."
        )
    return b


def pool_intervals(
    values: Tensor,
    times: Tensor,
    intervals: Sequence[WordInterval] | Sequence[tuple[float, float]] | Tensor,
    reduce: str = "mean",
) -> Tensor:
    """Pool a frame-rate stream inside each interval (e.g. video features per word).

    A frame belongs to an interval when ``start <= time < end``.  An interval that holds
    no frame (shorter than a frame period, or outside the stream) takes the single frame
    nearest to its midpoint (ties to the earlier frame).

    Args:
        values: (T, C) frame values (or (T,)).
        times: (T,) frame times in seconds, non-decreasing.
        intervals: W :class:`WordInterval`, (start, end) pairs, or a (W, 2) tensor, seconds.
        reduce: ``"mean"`` or ``"max"``.

    Returns:
        (W, C) (or (W,)) pooled values; floating dtype of ``values`` (float32 for integers).
    """
    if reduce not in POOL_REDUCTIONS:
        raise unknown_name_error("pool reduction", reduce, list(POOL_REDUCTIONS))
    t = _as_times(times, "pool_intervals")
    v = _as_values(values, t.shape[0], "pool_intervals")
    if t.shape[0] == 0:
        raise ValueError("pool_intervals: the stream has no frames.")
    if t.shape[0] > 1 and bool((t[1:] < t[:-1]).any()):
        raise ValueError("pool_intervals: times must be non-decreasing; sort the frames first.")
    bounds = _interval_bounds(intervals)  # (W, 2)
    out_dtype = v.dtype if v.is_floating_point() else torch.float32
    vf = v.to(torch.float64)
    lo = torch.searchsorted(t, bounds[:, 0].contiguous())  # first frame >= start
    hi = torch.searchsorted(t, bounds[:, 1].contiguous())  # first frame >= end
    empty = hi <= lo
    if bool(empty.any()):
        mid = (bounds[empty, 0] + bounds[empty, 1]) / 2
        right = torch.searchsorted(t, mid.contiguous()).clamp(max=t.shape[0] - 1)
        left = (right - 1).clamp(min=0)
        nearest = torch.where((t[right] - mid).abs() < (mid - t[left]).abs(), right, left)
        lo = lo.clone()
        hi = hi.clone()
        lo[empty] = nearest
        hi[empty] = nearest + 1
    if reduce == "mean":
        csum = torch.cat([torch.zeros_like(vf[:1]), vf.cumsum(0)])  # (T + 1, C)
        count = (hi - lo).to(torch.float64).view(-1, *([1] * (v.dim() - 1)))
        pooled = (csum[hi] - csum[lo]) / count
    elif bounds.shape[0] == 0:
        pooled = vf.new_zeros((0, *v.shape[1:]))
    else:
        pooled = torch.stack([vf[int(a) : int(b)].amax(dim=0) for a, b in zip(lo, hi, strict=True)])
    return pooled.to(out_dtype)
