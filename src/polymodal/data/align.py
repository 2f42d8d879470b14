"""Put streams with their own clocks on one timeline, cut windows, pool over words.

Streams are ``(values, timestamps)`` pairs: ``values`` is (T, C) (or (T,)), ``timestamps``
is (T,) in seconds, increasing.  Times are kept in float64 throughout (epoch seconds need
it); values keep their floating dtype.

* :func:`timing_stats` measures a stream's rate, jitter and gaps.
* :func:`merge_duplicate_times` collapses rows that share a timestamp (sensors that deliver
  in bursts stamp several rows with the same time).
* :func:`resample_stream` interpolates one stream onto a uniform grid ``t_k = start + k/rate``.
* :func:`align_streams` puts several streams on one grid over the overlap of their spans,
  marking grid points that fall in a long gap of any stream as invalid.
* :func:`sliding_windows` and :func:`window_labels` cut a uniform grid into fixed-length
  windows (in seconds) and give each window the majority label.
* :func:`read_align_file` reads GRID-style word timings and :func:`pool_intervals` pools any
  frame-rate stream inside each word.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from polymodal.registry import unknown_name_error

__all__ = [
    "AlignedStreams",
    "StreamTiming",
    "WindowLabels",
    "Windows",
    "WordInterval",
    "align_streams",
    "merge_duplicate_times",
    "pool_intervals",
    "read_align_file",
    "resample_stream",
    "sliding_windows",
    "timing_stats",
    "window_labels",
]

RESAMPLE_METHODS = ("linear", "nearest")
MERGE_REDUCTIONS = ("mean", "first", "last")
LABEL_REDUCTIONS = ("majority", "center")
POOL_REDUCTIONS = ("mean", "max")

# Slack (seconds) for comparing grid times with span ends, against float64 round-off.
_TIME_EPS = 1e-9


# --------------------------------------------------------------------------- checks


def _as_times(timestamps: object, name: str) -> Tensor:
    t = torch.as_tensor(timestamps)
    if t.dim() != 1:
        raise ValueError(
            f"{name}: timestamps must be 1-D (T,), got shape {tuple(t.shape)}. "
            "Pass one time per row of values."
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name}: timestamps must be real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: timestamps contain NaN or inf; drop those rows first.")
    return t


def _as_values(values: object, n: int, name: str) -> Tensor:
    v = torch.as_tensor(values)
    if v.dim() not in (1, 2):
        raise ValueError(f"{name}: values must be (T,) or (T, C), got shape {tuple(v.shape)}.")
    if v.shape[0] != n:
        raise ValueError(
            f"{name}: values have {v.shape[0]} rows but timestamps have {n}; "
            "pass one timestamp per row."
        )
    return v


def _check_increasing(t: Tensor, name: str) -> None:
    if t.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 samples to interpolate, got {t.shape[0]}.")
    d = t[1:] - t[:-1]
    bad = (d <= 0).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        kind = "repeats" if float(d[i]) == 0 else "goes back"
        raise ValueError(
            f"{name}: timestamps must be strictly increasing, but timestamp {i + 1} "
            f"({float(t[i + 1])!r}) {kind} after timestamp {i} ({float(t[i])!r}); "
            f"{int(bad.shape[0])} such step(s) in all. Sort the rows, or collapse repeated "
            "times with merge_duplicate_times()."
        )


def _check_rate(rate: float, name: str = "rate") -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a number (Hz), got {type(rate).__name__}")
    rate = float(rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{name} must be a positive, finite number of Hz, got {rate!r}")
    return rate


def _grid(start: float, end: float, rate: float) -> Tensor:
    """Uniform times ``start + k/rate`` for k = 0..N-1, the last one <= ``end``; (N,) float64."""
    n = math.floor((end - start) * rate + 1e-6) + 1
    return start + torch.arange(n, dtype=torch.float64) / rate


# --------------------------------------------------------------------------- timing


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


# --------------------------------------------------------------------------- resampling


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


# --------------------------------------------------------------------------- windows


@dataclass
class Windows:
    """Fixed-length windows cut from a uniform grid.

    Attributes:
        values: (W, L, C) (or (W, L) for a (N,) stream), a copy.
        start: (W,) float64 seconds, the time of each window's first step.
        start_index: (W,) long, the grid index of each window's first step.
        length: L, steps per window, ``round(window * rate)``.
        hop_steps: grid steps between consecutive windows, ``round(hop * rate)``.
        rate: the grid rate in Hz.
        valid: (W,) bool, True where every step of the window is valid.
    """

    values: Tensor
    start: Tensor
    start_index: Tensor
    length: int
    hop_steps: int
    rate: float
    valid: Tensor

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def index(self) -> Tensor:
        """(W, L) long: the grid index of every step of every window."""
        return self.start_index[:, None] + torch.arange(self.length)[None, :]


def _grid_rate(times: Tensor, where: str) -> float:
    if times.shape[0] < 2:
        raise ValueError(f"{where}: need at least 2 grid times, got {times.shape[0]}.")
    d = times[1:] - times[:-1]
    period = float(times[-1] - times[0]) / (times.shape[0] - 1)
    if period <= 0 or float((d - period).abs().max()) > 1e-6 * max(period, 1.0):
        raise ValueError(
            f"{where}: times must be a uniform increasing grid (steps between "
            f"{float(d.min())!r} and {float(d.max())!r} s). Resample first with "
            "resample_stream() or align_streams()."
        )
    return 1.0 / period


def sliding_windows(
    values: Tensor,
    times: Tensor,
    window: float,
    hop: float,
    valid: Tensor | None = None,
) -> Windows:
    """Cut a uniformly sampled stream into windows of ``window`` seconds every ``hop`` s.

    The rate is derived from the grid, ``rate = (N - 1) / (times[-1] - times[0])``; a window
    holds ``L = round(window * rate)`` steps and windows start every
    ``H = round(hop * rate)`` steps.  Only complete windows are kept:
    ``W = floor((N - L) / H) + 1`` (0 when N < L), which is
    ``floor((span - window) / hop) + 1`` with ``span = N / rate`` when window and hop are
    whole numbers of steps.

    Args:
        values: (N, C) or (N,) on the grid.
        times: (N,) seconds, uniform.
        window, hop: seconds, each at least one grid step.
        valid: optional (N,) bool grid mask (e.g. :attr:`AlignedStreams.valid`).

    Returns:
        :class:`Windows` with values (W, L, C), start (W,), start_index (W,), valid (W,).
    """
    t = _as_times(times, "sliding_windows")
    v = _as_values(values, t.shape[0], "sliding_windows")
    rate = _grid_rate(t, "sliding_windows")
    for pname, sec in (("window", window), ("hop", hop)):
        if isinstance(sec, bool) or not isinstance(sec, numbers.Real) or not sec > 0:
            raise ValueError(f"{pname} must be a positive number of seconds, got {sec!r}")
    length = round(window * rate)
    hop_steps = round(hop * rate)
    if length < 1 or hop_steps < 1:
        raise ValueError(
            f"sliding_windows: window={window!r} s and hop={hop!r} s must each span at least "
            f"one grid step (1/{rate:g} s); got {length} and {hop_steps} steps."
        )
    n = t.shape[0]
    if valid is not None:
        valid = torch.as_tensor(valid, dtype=torch.bool)
        if tuple(valid.shape) != (n,):
            raise ValueError(
                f"sliding_windows: valid must be (N,) = ({n},) bool, got {tuple(valid.shape)}"
            )
    n_win = (n - length) // hop_steps + 1 if n >= length else 0
    start_index = torch.arange(n_win, dtype=torch.long) * hop_steps
    idx = start_index[:, None] + torch.arange(length)[None, :]  # (W, L)
    win_values = v[idx]  # (W, L, C)
    win_valid = valid[idx].all(dim=1) if valid is not None else torch.ones(n_win, dtype=torch.bool)
    return Windows(win_values, t[start_index], start_index, length, hop_steps, rate, win_valid)


@dataclass
class WindowLabels:
    """One label per window.

    Attributes:
        labels: (W,) long.
        purity: (W,) float32, the fraction of the window's steps that carry that label.
    """

    labels: Tensor
    purity: Tensor


def window_labels(labels: Tensor, windows: Windows, reduce: str = "majority") -> WindowLabels:
    """Label each window of ``windows`` from per-step ``labels`` on the same grid.

    Args:
        labels: (N,) integer class per grid step (>= 0), e.g. resampled with
            ``resample_stream(..., method="nearest")``.
        windows: the :class:`Windows` cut from the same grid by :func:`sliding_windows`.
        reduce: ``"majority"``: the most frequent label; a tie goes to the smallest class
            index.  ``"center"``: the label of the window's middle step (index L // 2).

    Returns:
        :class:`WindowLabels` with labels (W,) long and purity (W,) float32.
    """
    if reduce not in LABEL_REDUCTIONS:
        raise unknown_name_error("label reduction", reduce, list(LABEL_REDUCTIONS))
    lab = torch.as_tensor(labels)
    if lab.dim() != 1 or lab.is_floating_point() or lab.dtype == torch.bool:
        raise TypeError(
            f"window_labels: labels must be a 1-D integer tensor (N,), got dtype {lab.dtype} "
            f"and shape {tuple(lab.shape)}."
        )
    lab = lab.long()
    w = len(windows)
    if w and int(windows.index.max()) >= lab.shape[0]:
        raise ValueError(
            f"window_labels: the windows reach grid index {int(windows.index.max())}, but "
            f"labels has only {lab.shape[0]} steps; pass labels on the windows' grid."
        )
    if w == 0:
        return WindowLabels(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    if lab.numel() and int(lab.min()) < 0:
        raise ValueError(f"window_labels: labels must be >= 0 class indices, got {int(lab.min())}.")
    per_step = lab[windows.index]  # (W, L)
    k = int(per_step.max()) + 1
    counts = torch.zeros(w, k, dtype=torch.long).scatter_add_(
        1, per_step, torch.ones_like(per_step)
    )  # (W, K)
    # argmax returns the first maximum: a tie goes to the smallest class index.
    out = counts.argmax(dim=1) if reduce == "majority" else per_step[:, windows.length // 2]
    purity = counts.gather(1, out[:, None])[:, 0].float() / windows.length
    return WindowLabels(out, purity)


# --------------------------------------------------------------------------- words


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
