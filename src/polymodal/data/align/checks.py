"""Input checks and the uniform grid shared by the alignment functions.

``_as_times`` and ``_as_values`` validate a stream's timestamps and values,
``_check_increasing`` and ``_check_rate`` guard interpolation inputs, and ``_grid`` builds
the uniform times ``start + k/rate``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor


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
