"""The interface every feature-level fusion shares, and the helpers they use.

A fusion maps the encoded modalities (a dict of :class:`~polymodal.outputs.EncoderOutput`)
and their presence masks to one representation, :class:`~polymodal.outputs.FusionOutput`
``features`` (B, out_dim), which a model's head maps to predictions; it never sees the
number of outputs.  Strategies that produce the predictions themselves (decision-level:
late, hybrid) live in :mod:`polymodal.models.decision`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from polymodal.outputs import EncoderOutput, FusionOutput
from polymodal.registry import Registry


class Fusion(nn.Module):
    """Base class of feature-level fusions: encoded modalities + presence masks in, features out.

    Constructed with ``in_dims`` (modality name -> D of its encoder); a subclass adds its
    hyperparameters after it and sets ``out_dim``, the width of its ``features``.
    Modalities are processed in sorted name order so results never depend on dict order.

    ``forward(inputs, present) -> FusionOutput``: ``inputs`` maps modality name ->
    :class:`EncoderOutput`; ``present`` maps modality name -> (B,) bool.  An example
    missing a modality must get a correct output from the modalities it has.

    Shape:
        - inputs[m].pooled: (B, D_m); inputs[m].sequence: (B, L_m, D_m); inputs[m].mask:
          (B, L_m)
        - present[m]: (B,) bool
        - output.features: (B, out_dim)
        - output.weights: (B, M) in sorted-modality order, or ``None``
    """

    out_dim: int

    def __init__(self, in_dims: dict[str, int]) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("A fusion module needs at least one modality in in_dims")
        self.in_dims = dict(sorted(in_dims.items()))
        self.names = list(self.in_dims)

    def forward(  # pragma: no cover - abstract
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> FusionOutput:
        raise NotImplementedError


class ModalityModule(Protocol):
    """What the input checks read: the sorted modality names and their input dims.

    :class:`Fusion` has both, and so do the decision-level fusions of
    :mod:`polymodal.models.decision`, which share these checks.
    """

    names: list[str]
    in_dims: dict[str, int]


# --------------------------------------------------------------------------- checks


def check_fusion_inputs(
    fusion: ModalityModule, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
) -> int:
    """Check the arguments of ``fusion.forward`` and return the batch size B.

    ``inputs`` and ``present`` must both hold exactly ``fusion.names``; every pooled
    vector must be (B, in_dims[name]) and every presence mask a (B,) bool tensor.
    """
    owner = type(fusion).__name__
    for arg, given in (("inputs", inputs), ("present", present)):
        missing = [n for n in fusion.names if n not in given]
        extra = sorted(set(given) - set(fusion.names))
        if missing or extra:
            raise ValueError(
                f"{owner} was built for modalities {fusion.names}, but its {arg!r} argument "
                f"lacks {missing} and has unexpected {extra}. Pass one entry per modality; "
                "mark missing examples with present=False instead of leaving the key out."
            )
    first = inputs[fusion.names[0]].pooled
    batch_size = int(first.shape[0]) if first.dim() > 0 else -1  # a bad first fails below
    for name in fusion.names:
        pooled, mask = inputs[name].pooled, present[name]
        if pooled.dim() != 2 or pooled.shape[1] != fusion.in_dims[name]:
            raise ValueError(
                f"{owner}: modality {name!r} pooled output must have shape "
                f"(B, {fusion.in_dims[name]}), got {tuple(pooled.shape)}. Build the fusion "
                "with in_dims taken from the encoders' out_dim."
            )
        if pooled.shape[0] != batch_size:
            raise ValueError(
                f"{owner}: modality {name!r} has batch size {pooled.shape[0]}, but "
                f"{fusion.names[0]!r} has {batch_size}; all modalities must share B."
            )
        if mask.dtype != torch.bool or tuple(mask.shape) != (batch_size,):
            raise ValueError(
                f"{owner}: present[{name!r}] must be a ({batch_size},) bool tensor, got "
                f"shape {tuple(mask.shape)} and dtype {mask.dtype}."
            )
    return batch_size


def check_positive_int(owner: str, param: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a ValueError naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {param!r} must be an int >= {minimum}, got {value!r}.")
    return value


def check_probability(owner: str, param: str, value: object) -> float:
    """``value`` as a float in [0, 1), else a ValueError naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: {param!r} must be a float in [0, 1), got {value!r}.")
    return float(value)


# --------------------------------------------------------------------------- presence helpers


def presence_matrix(fusion: ModalityModule, present: dict[str, Tensor]) -> Tensor:
    """The (B, M) bool presence of ``fusion.names`` (sorted-modality order)."""
    return torch.stack([present[n] for n in fusion.names], dim=1)


def zero_absent(x: Tensor, present: Tensor) -> Tensor:
    """``x`` with the rows where ``present`` is False replaced by zeros.

    Uses ``torch.where``, so whatever an absent row held (even inf or NaN) cannot reach the
    result or its gradient.

    Shape:
        x: (B, ...)
        present: (B,) bool
        output: like ``x``
    """
    keep = present.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_softmax(scores: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax of ``scores`` along ``dim`` over the entries where ``mask`` is True.

    Masked entries get weight exactly 0; a slice with no valid entry gets all zeros (not
    NaN), and the backward pass stays finite.

    Shape:
        scores: any shape
        mask: bool, broadcastable to ``scores``
        output: like ``scores``, non-negative, summing to 1 (or 0) along ``dim``
    """
    mask = mask.expand_as(scores)
    filled = scores.masked_fill(~mask, float("-inf"))
    any_valid = mask.any(dim=dim, keepdim=True)
    filled = torch.where(any_valid, filled, torch.zeros_like(filled))
    return torch.softmax(filled, dim=dim) * mask.to(scores.dtype)


FUSIONS: Registry[Fusion] = Registry("fusion")


def build_fusion(name: str, in_dims: dict[str, int], **kwargs: Any) -> Fusion:
    """Build a registered fusion by name for ``in_dims`` (see ``polymodal list fusions``)."""
    return FUSIONS.build(name, in_dims=in_dims, **kwargs)


__all__ = [
    "FUSIONS",
    "Fusion",
    "FusionOutput",
    "ModalityModule",
    "build_fusion",
    "check_fusion_inputs",
    "check_positive_int",
    "check_probability",
    "masked_softmax",
    "presence_matrix",
    "zero_absent",
]
