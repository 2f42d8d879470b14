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
for non-float tensors, and for a ``p`` so close to 0 or 1 that no 16-bit threshold
separates it, the call is ``F.dropout`` itself.

Under ``torch.compile`` the mask comes from the same code, registered as the custom operator
``polymodal::dropout_mask`` with the ``nondeterministic_seeded`` tag: the compiled graph
calls it as it is (inductor's own masks are 0.84x eager speed in MulT at p = 0.2), draws
the same masks as eager code from the same seed, and saves the mask for the backward rather
than recompute it.  Each :class:`Dropout` passes its own ``site`` number, so two dropouts of
one tensor in one graph are not merged into one mask.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 16  # a mask element is one 16-bit slice of a random integer
MIN_ELEMENTS = 8192  # smaller tensors: F.dropout is faster (benchmarks/dropout.py, 2 cores)
_LOW, _HIGH = -(1 << 63), (1 << 63) - 1  # torch.randint's range: every int64 but the largest
_SITES = itertools.count(1)  # a number per Dropout module (0: the function called directly)


def _mask(x: Tensor, p: float) -> Tensor:
    """A dropout mask for ``x``: 0 where dropped, ``1 / P(keep)`` where kept.

    Shape:
        x: (*); output: (*), contiguous, ``x``'s dtype
    """
    n = x.numel()
    dropped = round(p * LEVELS)  # of LEVELS equally likely 16-bit values, how many drop
    bits = torch.randint(_LOW, _HIGH, ((n + 3) // 4,), dtype=torch.int64)  # 4 slices each
    slices = bits.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    keep = slices >= dropped - LEVELS // 2  # (*) bool; P(keep) = (LEVELS - dropped) / LEVELS
    return keep.to(x.dtype).mul_(LEVELS / (LEVELS - dropped))  # (*) 0 or 1 / P(keep)


@torch.library.custom_op(
    "polymodal::dropout_mask", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def _compiled_mask(x: Tensor, p: float, site: int) -> Tensor:
    """:func:`_mask` as an operator ``torch.compile`` keeps whole (``site``: see the module)."""
    return _mask(x, p)


@_compiled_mask.register_fake
def _(x: Tensor, p: float, site: int) -> Tensor:
    return x.new_empty(x.shape)


def dropout(
    x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, site: int = 0
) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest to keep the mean.

    Args:
        x: any tensor.
        p: probability of zeroing an element, in [0, 1].
        training: apply dropout; ``False`` returns ``x``.
        inplace: overwrite ``x`` (as ``F.dropout(..., inplace=True)``).
        site: which dropout this is, under ``torch.compile`` (see the module docstring).

    Shape:
        x: (*); output: (*), the shape of ``x``
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}.")
    if not training or p == 0.0:
        return x
    dropped = round(p * LEVELS)
    if (
        x.device.type != "cpu"
        or not 0 < dropped < LEVELS
        or not x.is_floating_point()
        or x.numel() < MIN_ELEMENTS
    ):
        return F.dropout(x, p, training=True, inplace=inplace)
    compiling = torch.compiler.is_compiling()
    mask = _compiled_mask(x.detach(), p, site) if compiling else _mask(x, p)  # (*)
    return x.mul_(mask) if inplace else x * mask


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout`: the same module, with faster CPU masks.

    Args:
        p: probability of zeroing an element, in [0, 1].
        inplace: overwrite the input.

    Shape:
        x: (*); output: (*)
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(p, inplace)
        self.site = next(_SITES)

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training, self.inplace, self.site)
