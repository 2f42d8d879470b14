from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.data.align import (
    WordInterval,
    align_streams,
    merge_duplicate_times,
    pool_intervals,
    read_align_file,
    resample_stream,
    sliding_windows,
    timing_stats,
    window_labels,
)


def _jittered_times(n: int, rate: float, start: float, jitter: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise = (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5) * 2 * jitter
    return start + torch.arange(n, dtype=torch.float64) / rate + noise


# --------------------------------------------------------------------------- resample


def test_linear_ramp_resamples_exactly_on_irregular_times() -> None:
    t = _jittered_times(200, 100.0, 3.0, 0.003, seed=1)
    values = torch.stack([2.0 * t + 1.0, -0.5 * t], dim=1)  # (T, 2) float64
    out, grid = resample_stream(values, t, rate=30.0)
    assert grid.dtype == torch.float64
    assert grid[0] == t[0]
    assert grid[-1] <= t[-1] < grid[-1] + 1 / 30
    assert torch.allclose(grid, t[0] + torch.arange(grid.shape[0], dtype=torch.float64) / 30)
    assert out.shape == (grid.shape[0], 2)
    assert torch.allclose(out[:, 0], 2.0 * grid + 1.0, atol=1e-12)
    assert torch.allclose(out[:, 1], -0.5 * grid, atol=1e-12)


def test_resample_start_end_and_1d_values() -> None:
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    out, grid = resample_stream(t * 10, t, rate=4.0, start=0.25, end=0.75)
    assert grid.tolist() == [0.25, 0.5, 0.75]
    assert torch.allclose(out, torch.tensor([2.5, 5.0, 7.5], dtype=torch.float64))


def test_resample_nearest_keeps_dtype_and_ties_go_earlier() -> None:
    t = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    labels = torch.tensor([4, 7, 9])
    out, grid = resample_stream(labels, t, rate=4.0, method="nearest")
    assert out.dtype == torch.long
    # grid 0, .25, .5 (tie -> earlier), .75, 1, 1.25, 1.5 (tie -> earlier), 1.75, 2
    assert out.tolist() == [4, 4, 4, 7, 7, 7, 7, 9, 9]
    assert grid.shape == (9,)


def test_resample_rejects_bad_input() -> None:
    t = torch.tensor([0.0, 0.1, 0.1, 0.3], dtype=torch.float64)
    v = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"strictly increasing.*repeats.*merge_duplicate_times"):
        resample_stream(v, t, rate=10.0)
    with pytest.raises(ValueError, match=r"goes back"):
        resample_stream(v, torch.tensor([0.0, 0.2, 0.1, 0.3]), rate=10.0)
    with pytest.raises(ValueError, match=r"at least 2 samples.*got 1"):
        resample_stream(torch.zeros(1, 2), torch.zeros(1), rate=10.0)
    good = torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64)
    for bad_rate in (0.0, -5.0, float("nan")):
        with pytest.raises(ValueError, match=r"rate must be a positive"):
            resample_stream(v, good, rate=bad_rate)
    with pytest.raises(
        ValueError, match=r"Unknown resample method 'linaer'.*Did you mean 'linear'"
    ):
        resample_stream(v, good, rate=10.0, method="linaer")
    with pytest.raises(ValueError, match=r"must lie inside the stream's span.*extrapolate"):
        resample_stream(v, good, rate=10.0, start=-0.1)
    with pytest.raises(ValueError, match=r"values have 3 rows but timestamps have 4"):
        resample_stream(torch.zeros(3, 2), good, rate=10.0)


def test_merge_duplicate_times() -> None:
    t = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0, 1.0], dtype=torch.float64)
    v = torch.tensor([[1.0], [3.0], [5.0], [6.0], [7.0], [11.0]])
    mv, mt = merge_duplicate_times(v, t)
    assert mt.tolist() == [0.0, 0.5, 1.0]
    assert mv[:, 0].tolist() == [2.0, 5.0, 8.0]
    labels = torch.tensor([1, 2, 3, 4, 5, 6])
    assert merge_duplicate_times(labels, t, reduce="first")[0].tolist() == [1, 3, 4]
    assert merge_duplicate_times(labels, t, reduce="last")[0].tolist() == [2, 3, 6]
    with pytest.raises(TypeError, match=r"reduce='mean' needs floating values"):
        merge_duplicate_times(labels, t)
    with pytest.raises(ValueError, match=r"non-decreasing"):
        merge_duplicate_times(v, torch.tensor([0.0, 1.0, 0.5, 2.0, 3.0, 4.0]))


def test_timing_stats() -> None:
    t = torch.tensor([0.0, 0.01, 0.01, 0.02, 0.03, 0.08], dtype=torch.float64)
    s = timing_stats(t)
    assert s.n == 6
    assert s.duplicates == 1
    assert math.isclose(s.period, 0.01)
    assert math.isclose(s.rate, 100.0)
    assert math.isclose(s.max_gap, 0.05)
    assert math.isclose(s.duration, 0.08)
    assert s.jitter > 0


# --------------------------------------------------------------------------- align


def test_two_jittered_streams_align_on_their_overlap() -> None:
    def f(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sin(2 * math.pi * 0.5 * t), 0.1 * t], dim=1)

    ta = _jittered_times(1000, 100.0, 0.0, 0.002, seed=2)  # ~0 .. 10 s
    tb = _jittered_times(420, 40.0, 0.37, 0.004, seed=3)  # ~0.37 .. 10.84 s
    aligned = align_streams({"a": (f(ta), ta), "b": (f(tb)[:, :1], tb)}, rate=50.0)
    start, end = float(tb[0]), float(ta[-1])
    n = aligned.times.shape[0]
    assert aligned.times[0] == start
    assert aligned.times[-1] <= end < aligned.times[-1] + 1 / 50
    assert torch.allclose(aligned.times, start + torch.arange(n, dtype=torch.float64) / 50)
    assert aligned.values["a"].shape == (n, 2)
    assert aligned.values["b"].shape == (n, 1)
    assert aligned.valid.all()
    truth = f(aligned.times)
    # Linear interpolation of a 0.5 Hz sine sampled at >= 40 Hz: error < (2 pi 0.5)^2 h^2 / 8.
    assert (aligned.values["a"] - truth).abs().max() < 1e-3
    assert (aligned.values["b"][:, 0] - truth[:, 0]).abs().max() < 5e-3
    assert torch.allclose(aligned.values["a"][:, 1], truth[:, 1], atol=1e-12)


def test_align_marks_gaps_invalid() -> None:
    t = torch.arange(0, 101, dtype=torch.float64) / 100  # 0 .. 1 s at 100 Hz
    keep = (t < 0.3) | (t > 0.6)  # a 0.31 s hole between 0.29 and 0.61
    ta = t[keep]
    aligned = align_streams(
        {"a": (ta.unsqueeze(1), ta), "b": (t.unsqueeze(1), t)}, rate=20.0, max_gap=0.1
    )
    inside = (aligned.times > 0.29) & (aligned.times < 0.61)
    assert inside.any()
    assert torch.equal(aligned.valid, ~inside)
    assert align_streams({"a": (ta, ta)}, rate=20.0).valid.all()


def test_align_errors_name_the_stream() -> None:
    t = torch.arange(10, dtype=torch.float64) / 10
    with pytest.raises(
        ValueError, match=r"do not overlap: stream 'early' ends at .* stream 'late'"
    ):
        align_streams({"early": (t, t), "late": (t, t + 5.0)}, rate=10.0)
    with pytest.raises(ValueError, match=r"stream 'dup'.*strictly increasing"):
        align_streams({"ok": (t, t), "dup": (t, torch.zeros(10))}, rate=10.0)
    with pytest.raises(ValueError, match=r"method names stream\(s\) \['labels'\]"):
        align_streams({"ok": (t, t)}, rate=10.0, method={"labels": "nearest"})


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("n", "rate", "window", "hop"),
    [(500, 50.0, 2.0, 1.0), (523, 50.0, 2.0, 0.5), (100, 50.0, 2.0, 1.0), (37, 10.0, 0.8, 0.3)],
)
def test_window_count_and_content(n: int, rate: float, window: float, hop: float) -> None:
    times = 7.0 + torch.arange(n, dtype=torch.float64) / rate
    values = torch.arange(n * 3, dtype=torch.float32).view(n, 3)
    w = sliding_windows(values, times, window, hop)
    span = n / rate
    assert len(w) == math.floor((span - window) / hop + 1e-9) + 1
    length, step = round(window * rate), round(hop * rate)
    assert (w.length, w.hop_steps) == (length, step)
    assert w.values.shape == (len(w), length, 3)
    assert w.start_index.tolist() == [k * step for k in range(len(w))]
    assert torch.equal(w.start, times[w.start_index])
    assert torch.equal(w.values, values[w.index])
    assert int(w.index.max()) == w.start_index[-1] + length - 1 <= n - 1
    assert w.valid.all()


def test_windows_shorter_stream_and_valid_mask() -> None:
    times = torch.arange(50, dtype=torch.float64) / 50
    assert len(sliding_windows(torch.zeros(50, 2), times, 2.0, 1.0)) == 0
    times = torch.arange(250, dtype=torch.float64) / 50
    valid = torch.ones(250, dtype=torch.bool)
    valid[120] = False  # 2.4 s: inside the windows starting at 1 s and 2 s
    w = sliding_windows(torch.zeros(250, 2), times, 2.0, 1.0, valid=valid)
    assert w.start.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert w.valid.tolist() == [True, False, False, True]


def test_windows_reject_non_uniform_grid_and_short_window() -> None:
    t = torch.tensor([0.0, 0.1, 0.25, 0.3], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"uniform increasing grid.*resample_stream"):
        sliding_windows(torch.zeros(4, 1), t, 0.2, 0.1)
    grid = torch.arange(10, dtype=torch.float64) / 10
    with pytest.raises(ValueError, match=r"at least one grid step"):
        sliding_windows(torch.zeros(10, 1), grid, 0.01, 0.1)
    with pytest.raises(ValueError, match=r"hop must be a positive"):
        sliding_windows(torch.zeros(10, 1), grid, 0.2, 0.0)


def test_window_labels_majority_ties_and_purity() -> None:
    grid = torch.arange(8, dtype=torch.float64) / 4  # 4 Hz
    labels = torch.tensor([2, 2, 1, 0, 0, 3, 3, 3])
    w = sliding_windows(torch.zeros(8, 1), grid, window=1.0, hop=0.5)  # L=4, hop 2
    assert w.start_index.tolist() == [0, 2, 4]
    out = window_labels(labels, w)
    # [2,2,1,0] -> 2 (2/4); [1,0,0,3] -> 0 (2/4); [0,3,3,3] -> 3 (3/4)
    assert out.labels.tolist() == [2, 0, 3]
    assert out.purity.tolist() == [0.5, 0.5, 0.75]
    tie = window_labels(torch.tensor([3, 3, 1, 1, 0, 0, 2, 2]), w)
    assert tie.labels.tolist() == [1, 0, 0]  # every window is a 2-2 tie: smallest index wins
    center = window_labels(labels, w, reduce="center")
    assert center.labels.tolist() == [1, 0, 3]
    with pytest.raises(ValueError, match=r"Unknown label reduction 'mode'"):
        window_labels(labels, w, reduce="mode")
    with pytest.raises(TypeError, match=r"1-D integer tensor"):
        window_labels(labels.float(), w)
    with pytest.raises(ValueError, match=r"only 6 steps"):
        window_labels(labels[:6], w)


# --------------------------------------------------------------------------- words


def test_read_align_file_grid(data_root: Path) -> None:
    words = read_align_file(data_root / "grid_samples" / "swwp2s.align")
    assert [w.word for w in words] == ["set", "white", "with", "p", "two", "soon"]
    assert all(0.0 <= w.start < w.end <= 3.0 for w in words)
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))
    assert words[0] == WordInterval(0.49, 0.77, "set")  # 12250 19250 in 1/25000 s
    everything = read_align_file(data_root / "grid_samples" / "swwp2s.align", drop=None)
    assert next(w.word for w in everything) == "sil"
    assert everything[-1].end == 74500 / 25000


def test_read_align_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere.align"):
        read_align_file(tmp_path / "nothere.align")
    bad = tmp_path / "bad.align"
    bad.write_text("0 100 sil\n100 abc set\n")
    with pytest.raises(ValueError, match=r"bad.align:2: start and end must be numbers"):
        read_align_file(bad)
    bad.write_text("0 100\n")
    with pytest.raises(ValueError, match=r"bad.align:1: expected 'start end word'"):
        read_align_file(bad)


def test_pool_frame_stream_within_grid_words(data_root: Path) -> None:
    words = read_align_file(data_root / "grid_samples" / "swwp2s.align")
    fps = 25
    frames = torch.arange(3 * fps, dtype=torch.float32)  # value = frame index
    times = torch.arange(3 * fps, dtype=torch.float64) / fps
    stream = torch.stack([frames, -2 * frames], dim=1)  # (75, 2)
    mean = pool_intervals(stream, times, words)
    top = pool_intervals(stream, times, words, reduce="max")
    assert mean.shape == top.shape == (6, 2)
    for i, w in enumerate(words):
        s = Fraction(round(w.start * 25000), 25000)
        e = Fraction(round(w.end * 25000), 25000)
        inside = [k for k in range(3 * fps) if s <= Fraction(k, fps) < e]
        assert inside, w
        assert mean[i, 0].item() == pytest.approx(sum(inside) / len(inside))
        assert mean[i, 1].item() == pytest.approx(-2 * sum(inside) / len(inside))
        assert top[i, 0].item() == max(inside)
        assert top[i, 1].item() == -2 * min(inside)
    # "set" is 0.49-0.77 s: frames 13..19 (0.52 .. 0.76 s).
    assert mean[0, 0].item() == pytest.approx(16.0)


def test_pool_empty_interval_takes_nearest_frame() -> None:
    times = torch.arange(10, dtype=torch.float64) / 10
    values = torch.arange(10, dtype=torch.int64)
    out = pool_intervals(values, times, [(0.31, 0.33), (5.0, 6.0), (0.0, 0.25)])
    assert out.dtype == torch.float32
    assert out.tolist() == [3.0, 9.0, 1.0]
    with pytest.raises(ValueError, match=r"interval 0 ends"):
        pool_intervals(values, times, [(0.5, 0.4)])
    with pytest.raises(ValueError, match=r"Unknown pool reduction 'sum'"):
        pool_intervals(values, times, [(0.1, 0.4)], reduce="sum")


# --------------------------------------------------------------------------- real HAR pair


def _read_har(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(7))
    return torch.from_numpy(table[:, :6]), torch.from_numpy(table[:, 6])


def test_har_phone_watch_pair_aligns(data_root: Path) -> None:
    folder = data_root / "har_phone_watch" / "DATA" / "s01"
    pv, pt_ms = _read_har(folder / "s01_01_sp.csv")
    wv, wt_ms = _read_har(folder / "s01_01_sw.csv")
    origin = float(min(pt_ms[0], wt_ms[0]))
    pt, wt = (pt_ms - origin) / 1000, (wt_ms - origin) / 1000  # seconds

    phone, watch = timing_stats(pt), timing_stats(wt)
    offset = watch.start - phone.start
    assert abs(offset) < 1.0  # the devices start within a second of each other
    for s in (phone, watch):
        assert 90.0 < s.rate < 115.0  # ~100 Hz nominal
        assert s.jitter > 0.0  # independent clocks with jitter
        assert s.max_gap < 0.5
    assert phone.duplicates > 0  # the phone stamps bursts with one time

    pv, pt = merge_duplicate_times(pv, pt)
    wv, wt = merge_duplicate_times(wv, wt)
    aligned = align_streams({"phone": (pv, pt), "watch": (wv, wt)}, rate=50.0, max_gap=0.5)
    start = max(float(pt[0]), float(wt[0]))
    end = min(float(pt[-1]), float(wt[-1]))
    n = len(aligned)
    assert n == math.floor((end - start) * 50 + 1e-6) + 1
    assert aligned.times[0] == start and aligned.times[-1] <= end
    steps = aligned.times[1:] - aligned.times[:-1]
    assert torch.allclose(steps, torch.full_like(steps, 0.02), atol=1e-9)
    assert aligned.valid.all()
    for name in ("phone", "watch"):
        vals = aligned.values[name]
        assert vals.shape == (n, 6)
        assert torch.isfinite(vals).all()
        gravity = vals[:, :3].norm(dim=1).median()
        assert 9.0 < gravity < 10.6  # accelerometer in m/s^2 at rest/walking
