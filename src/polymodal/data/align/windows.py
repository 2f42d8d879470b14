"""Fixed-length windows cut from a uniform grid (:func:`sliding_windows`) and one label
per window (:func:`window_labels`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from polymodal.data.align.checks import _as_times, _as_values
from polymodal.errors import unknown_name_error

LABEL_REDUCTIONS = ("majority", "center")


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
