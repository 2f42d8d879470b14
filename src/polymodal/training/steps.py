"""The training loss of an epoch, summed on the device without waiting for it.

Reading a loss on the host (``float(loss)``, ``if not torch.isfinite(loss)``) makes the
host wait for the device to finish the step; on a GPU the host then cannot queue the next
step's kernels while this one runs, and a model whose step is short loses much of its
speed (benchmarks/gpu.py measures it).  :class:`LossSum` adds each step's ``loss * count``
on the device and reads it only when the loop needs the number: every ``log_every``
steps, before a checkpoint and at the end of an epoch.  A non-finite loss is found there,
naming the steps it happened in, before any checkpoint could keep the damaged weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from polymodal.training.distributed import reduce_loss_sum


class LossSum:
    """``sum(loss * count)`` and ``sum(count)`` since the last :meth:`flush`.

    Args:
        device: where the losses are.
        step: optimisation steps done before the first :meth:`add`.
    """

    def __init__(self, device: torch.device, step: int) -> None:
        self.total = torch.zeros((), dtype=torch.float32, device=device)
        self.count = 0
        self.first = step + 1  # the first step not yet read
        self.steps = step

    def add(self, loss: Tensor, count: int) -> None:
        """Add one step's mean ``loss`` over ``count`` examples (no host synchronisation)."""
        self.total += loss.detach().float() * count
        self.count += count
        self.steps += 1

    def flush(self, state: Any, lr: float) -> None:
        """Add the sum to ``state.loss_sum``/``state.loss_count`` (waits for the device).

        Raises:
            FloatingPointError: a step's loss was NaN or infinite.
        """
        value, count = reduce_loss_sum(self.total, self.count)  # over torchrun's ranks
        if count == 0:
            return
        if not math.isfinite(value):
            where = (
                f"step {self.steps}"
                if self.first == self.steps
                else f"steps {self.first}-{self.steps}"
            )
            raise FloatingPointError(
                f"The training loss is {value} in {where}. Lower optim.lr (now {lr}) or set "
                "optim.grad_clip."
            )
        state.loss_sum += value
        state.loss_count += count
        self.total.zero_()
        self.count = 0
        self.first = self.steps + 1


__all__ = ["LossSum"]
