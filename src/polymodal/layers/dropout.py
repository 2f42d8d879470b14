"""Dropout whose masks are drawn faster on CPU; elsewhere it is ``F.dropout``.

PyTorch draws a CPU dropout mask with ``bernoulli_`` at about 6 ns an element, which made
dropout a fifth of a MulT training step on 2 cores, more than all its linear layers.  Here a
CPU mask is read from 16-bit slices of 64-bit random integers (``torch.randint``, the
default generator, so ``torch.manual_seed`` makes it reproducible): one slice per element,
kept where the slice is at least a threshold.  Forward and backward together run about 3x
faster than ``F.dropout`` (``benchmarks/dropout.py``) on tensors of more than about 8k
elements; smaller ones, where the extra operations cost more than the mask, go to
``F.dropout``.

The kept fraction is a multiple of 1/65536: ``keep = 1 - round(p * 65536) / 65536``
(within 7.7e-6 of ``1 - p``), and kept values are scaled by ``1 / keep``, so the
expectation of the output is its input exactly, as with ``F.dropout``.  On other devices,
under ``torch.compile`` (inductor fuses its own random numbers), and for a ``p`` so close to
0 or 1 that no 16-bit threshold separates it, the call is ``F.dropout`` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 16  # a mask element is one 16-bit slice of a random integer
MIN_ELEMENTS = 8192  # smaller tensors: F.dropout is faster (benchmarks/dropout.py, 2 cores)
_LOW, _HIGH = -(1 << 63), (1 << 63) - 1  # torch.randint's range: every int64 but the largest


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest to keep the mean.

    Args:
        x: any tensor.
        p: probability of zeroing an element, in [0, 1].
        training: apply dropout; ``False`` returns ``x``.
        inplace: overwrite ``x`` (as ``F.dropout(..., inplace=True)``).

    Shape:
        x: (*); output: (*), the shape of ``x``
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}.")
    if not training or p == 0.0:
        return x
    dropped = round(p * LEVELS)  # of LEVELS equally likely 16-bit values, how many drop
    if (
        x.device.type != "cpu"
        or not 0 < dropped < LEVELS
        or not x.is_floating_point()
        or x.numel() < MIN_ELEMENTS
        or torch.compiler.is_compiling()
    ):
        return F.dropout(x, p, training=True, inplace=inplace)
    n = x.numel()
    bits = torch.randint(_LOW, _HIGH, ((n + 3) // 4,), dtype=torch.int64)  # 4 slices each
    slices = bits.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    keep = slices >= dropped - LEVELS // 2  # (*) bool; P(keep) = (LEVELS - dropped) / LEVELS
    mask = keep.to(x.dtype).mul_(LEVELS / (LEVELS - dropped))  # (*) 0 or 1 / P(keep)
    return x.mul_(mask) if inplace else x * mask


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout`: the same module, with faster CPU masks.

    Args:
        p: probability of zeroing an element, in [0, 1].
        inplace: overwrite the input.

    Shape:
        x: (*); output: (*)
    """

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training, self.inplace)
