"""The fusion interface shared by every strategy (early, late, tensor, attention, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from polymodal.encoders.base import EncoderOutput
from polymodal.registry import Registry


@dataclass
class FusionOutput:
    """What every fusion module returns.

    Attributes:
        fused: (B, out_dim).  For feature-level fusion, a representation the model's head
            maps to predictions; for decision-level fusion (``Fusion.decision_level``), the
            predictions themselves (logits, out_dim = number of outputs).
        modality_logits: modality name -> (B, num_outputs) per-modality predictions, for
            strategies that have per-modality heads (late, hybrid); else ``None``.
        weights: (B, M) per-example modality weights (attention, gates, late-fusion
            weights) in sorted-modality order, for inspection; else ``None``.
    """

    fused: Tensor
    modality_logits: dict[str, Tensor] | None = None
    weights: Tensor | None = None


class Fusion(nn.Module):
    """Base class: encoded modalities plus presence masks in, one representation out.

    Constructed with ``in_dims`` (modality name -> D of its encoder) and ``num_outputs``
    (the prediction size, used by decision-level strategies).  Modalities are processed in
    sorted name order so results never depend on dict order.

    ``forward(inputs, present)``: ``inputs`` maps modality name -> :class:`EncoderOutput`;
    ``present`` maps modality name -> (B,) bool.  An example missing a modality must get
    a correct output from the modalities it has.
    """

    out_dim: int
    decision_level: bool = False

    def __init__(self, in_dims: dict[str, int], num_outputs: int) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("A fusion module needs at least one modality in in_dims")
        self.in_dims = dict(sorted(in_dims.items()))
        self.names = list(self.in_dims)
        self.num_outputs = num_outputs

    def forward(  # pragma: no cover - abstract
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> FusionOutput:
        raise NotImplementedError


FUSIONS: Registry[Fusion] = Registry("fusion")


def build_fusion(name: str, in_dims: dict[str, int], num_outputs: int, **kwargs: object) -> Fusion:
    """Build a registered fusion by name (see ``polymodal list fusions``)."""
    return FUSIONS.build(name, in_dims=in_dims, num_outputs=num_outputs, **kwargs)
