"""Resampling onto a uniform grid: one stream (:func:`resample_stream`) or several on
one shared grid over the overlap of their spans (:func:`align_streams`).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from polymodal.data.align.checks import (
    _as_times,
    _as_values,
    _check_increasing,
    _check_rate,
    _grid,
)
from polymodal.errors import unknown_name_error

RESAMPLE_METHODS = ("linear", "nearest")

# Slack (seconds) for comparing grid times with span ends, against float64 round-off.
_TIME_EPS = 1e-9


def _left_index(t: Tensor, grid: Tensor) -> Tensor:
    """(N,) long: for each grid time, the sample ``i`` with ``t[i] <= g < t[i + 1]``.

    Clamped to [0, T - 2], so grid times at or past the last sample use the last interval.
    """
    return (torch.searchsorted(t, grid, right=True) - 1).clamp(0, t.shape[0] - 2)


def _interpolate(
    v: Tensor, t: Tensor, grid: Tensor, method: str, left: Tensor | None = None
) -> Tensor:
    """Values of the stream (t, v) at ``grid`` (inside [t0, tN]); v (T, ...) -> (N, ...)."""
    tq = grid.clamp(float(t[0]), float(t[-1]))
    if left is None:
        left = _left_index(t, tq)
    right = left + 1
    if method == "nearest":
        # Ties go to the earlier sample.
        take_right = (t[right] - tq) < (tq - t[left])
        return v[torch.where(take_right, right, left)]
    w = (tq - t[left]) / (t[right] - t[left])  # (N,) in [0, 1]
    w = w.view(-1, *([1] * (v.dim() - 1)))
    vf = v.to(torch.float64)
    out = vf[left] + w * (vf[right] - vf[left])
    return out.to(v.dtype if v.is_floating_point() else torch.float32)


def resample_stream(
    values: Tensor,
    timestamps: Tensor,
    rate: float,
    start: float | None = None,
    end: float | None = None,
    method: str = "linear",
) -> tuple[Tensor, Tensor]:
    """Interpolate a stream onto the uniform grid ``t_k = start + k / rate``.

    Args:
        values: (T, C) or (T,) samples.  ``"linear"`` returns floating values (integer
            input becomes float32); ``"nearest"`` keeps the dtype (use it for labels).
        timestamps: (T,) seconds, strictly increasing, T >= 2 (collapse repeated times
            with :func:`merge_duplicate_times` first).
        rate: grid rate in Hz (> 0).
        start, end: grid span in seconds; default to the stream's first and last
            timestamp.  Both must lie inside the stream's span (no extrapolation).  The
            last grid point is the largest ``start + k/rate`` that is ``<= end``.
        method: ``"linear"`` or ``"nearest"`` (ties go to the earlier sample).

    Returns:
        ``(values, times)``: (N, C) or (N,), and (N,) float64 seconds.
    """
    if method not in RESAMPLE_METHODS:
        raise unknown_name_error("resample method", method, list(RESAMPLE_METHODS))
    rate = _check_rate(rate)
    t = _as_times(timestamps, "resample_stream")
    v = _as_values(values, t.shape[0], "resample_stream")
    _check_increasing(t, "resample_stream")
    t0, t1 = float(t[0]), float(t[-1])
    s = t0 if start is None else float(start)
    e = t1 if end is None else float(end)
    if s < t0 - _TIME_EPS or e > t1 + _TIME_EPS:
        raise ValueError(
            f"resample_stream: the grid [start={s!r}, end={e!r}] must lie inside the stream's "
            f"span [{t0!r}, {t1!r}]; resampling does not extrapolate. Clip start/end to the "
            "span or leave them as None."
        )
    if e < s:
        raise ValueError(f"resample_stream: end ({e!r}) is before start ({s!r}).")
    grid = _grid(s, e, rate)
    return _interpolate(v, t, grid, method), grid


@dataclass
class AlignedStreams:
    """Several streams on one uniform grid.

    Attributes:
        values: stream name -> (N, C_name) (or (N,)) values on the grid.
        times: (N,) float64 seconds, ``times[k] = times[0] + k / rate``.
        valid: (N,) bool; False where a grid point falls in a gap longer than ``max_gap``
            of at least one stream (interpolated across the gap, so not to be trusted).
        rate: the grid rate in Hz.
    """

    values: dict[str, Tensor]
    times: Tensor
    valid: Tensor
    rate: float

    def __len__(self) -> int:
        return int(self.times.shape[0])


def align_streams(
    streams: Mapping[str, tuple[Tensor, Tensor]],
    rate: float,
    max_gap: float | None = None,
    method: str | Mapping[str, str] = "linear",
) -> AlignedStreams:
    """Resample every stream onto one grid at ``rate`` over the overlap of their spans.

    The grid starts at the latest first timestamp and ends at (or just before) the earliest
    last timestamp, so every grid point lies inside every stream.

    Args:
        streams: name -> ``(values (T, C) or (T,), timestamps (T,) seconds)``; each stream's
            timestamps strictly increasing (see :func:`merge_duplicate_times`).  All streams
            must share the time origin (e.g. epoch seconds).
        rate: grid rate in Hz.
        max_gap: seconds; a grid point strictly inside an interval between two consecutive
            samples longer than this, in any stream, is marked invalid.  ``None``: all valid.
        method: ``"linear"`` or ``"nearest"`` for every stream, or a mapping from stream
            name to method (streams left out use ``"linear"``); e.g.
            ``{"label": "nearest"}`` to carry integer labels along.

    Returns:
        :class:`AlignedStreams` with values (N, C_name), times (N,), valid (N,).
    """
    if not streams:
        raise ValueError("align_streams: got no streams; pass a mapping name -> (values, times).")
    if isinstance(method, str):
        methods = dict.fromkeys(streams, method)
    else:
        unknown = [n for n in method if n not in streams]
        if unknown:
            raise ValueError(
                f"align_streams: method names stream(s) {unknown} that are not in streams "
                f"({', '.join(map(repr, streams))}); fix the names in method."
            )
        methods = {n: method.get(n, "linear") for n in streams}
    for m in methods.values():
        if m not in RESAMPLE_METHODS:
            raise unknown_name_error("resample method", m, list(RESAMPLE_METHODS))
    rate = _check_rate(rate)
    if max_gap is not None and not (
        isinstance(max_gap, numbers.Real) and not isinstance(max_gap, bool) and max_gap > 0
    ):
        raise ValueError(f"max_gap must be a positive number of seconds or None, got {max_gap!r}")
    checked: dict[str, tuple[Tensor, Tensor]] = {}
    for name, pair in streams.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"align_streams: stream {name!r} must be a (values, timestamps) pair, "
                f"got {type(pair).__name__}"
            )
        where = f"align_streams: stream {name!r}"
        t = _as_times(pair[1], where)
        v = _as_values(pair[0], t.shape[0], where)
        _check_increasing(t, where)
        checked[name] = (v, t)
    first = max(checked, key=lambda n: float(checked[n][1][0]))
    last = min(checked, key=lambda n: float(checked[n][1][-1]))
    start = float(checked[first][1][0])
    end = float(checked[last][1][-1])
    if end < start:
        raise ValueError(
            f"align_streams: the streams do not overlap: stream {last!r} ends at {end!r} s, "
            f"before stream {first!r} starts at {start!r} s. Check that all streams use the "
            "same time origin and unit (seconds)."
        )
    grid = _grid(start, end, rate)
    valid = torch.ones(grid.shape[0], dtype=torch.bool)
    out: dict[str, Tensor] = {}
    for name, (v, t) in checked.items():
        left = _left_index(t, grid)
        out[name] = _interpolate(v, t, grid, methods[name], left)
        if max_gap is not None:
            gap = t[left + 1] - t[left]
            inside = (grid > t[left]) & (grid < t[left + 1])
            valid &= ~(inside & (gap > max_gap))
    return AlignedStreams(out, grid, valid, rate)
