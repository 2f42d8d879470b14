"""Learning-rate schedule: linear warmup, then cosine decay to ``min_ratio`` of the peak."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """The learning-rate multiplier at optimizer step ``step`` (0-based).

    Steps ``0 .. warmup_steps-1`` rise linearly to 1 (step ``s`` gets ``(s+1)/warmup_steps``,
    so the first step already learns); the remaining steps follow a half cosine from 1 down
    to ``min_ratio`` at ``total_steps``.  A callable object rather than a lambda so that
    :class:`~torch.optim.lr_scheduler.LambdaLR` saves its fields in ``state_dict``.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
            )
        if not 0.0 <= min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """Warmup steps for ``warmup_ratio`` of ``total_steps`` (rounded; 0 if the ratio is 0)."""
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(
            f"warmup_ratio must be in [0, 1), got {warmup_ratio}; e.g. 0.05 warms up over the "
            "first 5% of steps."
        )
    return min(total_steps, round(warmup_ratio * total_steps))


def build_scheduler(
    optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.05, min_ratio: float = 0.0
) -> LambdaLR:
    """A per-step :class:`LambdaLR` with :class:`WarmupCosine`; call ``step()`` after each
    optimizer step."""
    fn = WarmupCosine(total_steps, warmup_steps_for(total_steps, warmup_ratio), min_ratio)
    return LambdaLR(optimizer, fn)


def scheduled_lr(scheduler: LambdaLR, lr: float) -> float:
    """The schedule's current rate for the peak ``lr`` (the first group's, unscaled when
    ``optim.lr_scale`` or ``optim.layer_decay`` gave that group another base)."""
    last, base = scheduler.get_last_lr()[0], scheduler.base_lrs[0]
    return float(last if base == lr else last * lr / base)


__all__ = ["WarmupCosine", "build_scheduler", "scheduled_lr", "warmup_steps_for"]
