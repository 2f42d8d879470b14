"""The distributed context a loss is built with, and feature gathering across ranks.

A contrastive loss over a data-parallel batch needs every rank's embeddings as negatives.
Following open_clip, the rank and world size are constructor arguments of the loss (a
:class:`DistributedContext`) instead of being read from global state, so a loss can be
built and tested on one CPU process, and :func:`gather_features` is the identity when
``world_size == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel job.

    Attributes:
        rank: this process's rank in ``group`` (0-based).
        world_size: the number of processes in ``group``; 1 means no communication.
        group: the ``torch.distributed`` process group to gather over; ``None`` means the
            default (world) group.
    """

    rank: int = 0
    world_size: int = 1
    group: Any = None

    def __post_init__(self) -> None:
        for name, value, minimum in (("world_size", self.world_size, 1), ("rank", self.rank, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"DistributedContext: {name!r} must be an int >= {minimum}, got {value!r}."
                )
        if self.rank >= self.world_size:
            raise ValueError(
                f"DistributedContext: 'rank' must be in [0, world_size={self.world_size}), "
                f"got rank={self.rank}. Pass the rank of this process within the group."
            )

    @property
    def is_distributed(self) -> bool:
        """Whether features must be exchanged with other ranks (``world_size > 1``)."""
        return self.world_size > 1


def _check_initialised(ctx: DistributedContext) -> None:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError(
            f"The loss was built with world_size={ctx.world_size}, but torch.distributed is "
            "not initialised. Call torch.distributed.init_process_group(...) in every process "
            "first, or build the loss with world_size=1 for single-process training."
        )
    actual = torch.distributed.get_world_size(group=ctx.group)
    if actual != ctx.world_size:
        raise ValueError(
            f"The loss was built with world_size={ctx.world_size}, but its process group has "
            f"{actual} processes. Build the loss with world_size={actual}."
        )


def gather_features(x: Tensor, ctx: DistributedContext, with_grad: bool = True) -> Tensor:
    """Concatenate every rank's ``x`` along the batch dimension, in rank order.

    With ``with_grad=True`` the gather is differentiable
    (``torch.distributed.nn.functional.all_gather``): the backward pass sums, on each
    rank, the gradients that all ranks computed for that rank's rows.  With
    ``with_grad=False`` the other ranks' rows are constants and only this rank's own rows
    (put back in place) carry gradient.

    Every rank must pass the same shape.  With ``ctx.world_size == 1`` this returns ``x``.

    Shape:
        x: (B, D) this rank's rows.
        output: (world_size * B, D); rows ``rank * B : (rank + 1) * B`` are ``x``.
    """
    if not ctx.is_distributed:
        return x
    _check_initialised(ctx)
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x, group=ctx.group), dim=0)
    parts = [torch.empty_like(x) for _ in range(ctx.world_size)]
    torch.distributed.all_gather(parts, x.detach().contiguous(), group=ctx.group)
    parts[ctx.rank] = x  # keep the local rows in the autograd graph
    return torch.cat(parts, dim=0)
