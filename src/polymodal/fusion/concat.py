"""Early fusion: concatenate pooled modality vectors and presence flags, then an MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.fusion.base import (
    FUSIONS,
    Fusion,
    check_fusion_inputs,
    check_positive_int,
    check_probability,
    zero_absent,
)
from polymodal.layers.dropout import Dropout
from polymodal.layers.mlp import MLP, make_activation
from polymodal.outputs import EncoderOutput, FusionOutput

# --------------------------------------------------------------------------- early fusion


@FUSIONS.register(
    "early", "Concatenate pooled vectors + presence flags, then an MLP.", kind="feature"
)
class EarlyFusion(Fusion):
    """Concatenate the pooled vectors of all modalities and the presence flags, then an MLP.

    The MLP (``num_layers`` linear layers) ends with an activation and dropout too, so the
    fused vector is a non-linear representation for the model's head.

    Missing modalities: an absent modality's pooled vector is replaced by zeros (with
    ``torch.where``, so whatever finite or non-finite values an encoder produced for that row
    cannot leak into the output), and the M presence flags (1 = present) are appended to the
    concatenation.  We append flags rather than substituting a learned "missing" embedding
    because (a) the flag's column in the first linear layer is a free per-modality offset in
    hidden space, whereas a missing embedding e_m only reaches hidden space as W_m e_m,
    through the modality's own feature weights (rank <= D_m, and moving whenever W_m
    learns from present examples); (b) it costs M extra inputs instead of sum(D_m)
    parameters; (c) the flag weights learn from every example, not only from the rare
    examples that lack the modality.  An example missing every modality still gets a
    finite output (the MLP of the all-zero input).

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        hidden_dim: width H of the MLP and of the fused output.
        num_layers: linear layers in the MLP (>= 1), each followed by the activation.
        activation: ``"gelu"``, ``"relu"``, ``"silu"`` or ``"tanh"``.
        dropout: dropout probability after each activation.
        norm: LayerNorm before each hidden activation (not after the last layer).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden_dim: int = 128,
        num_layers: int = 1,
        activation: str = "gelu",
        dropout: float = 0.0,
        norm: bool = False,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers)
        dropout = check_probability(owner, "dropout", dropout)
        width = sum(self.in_dims.values()) + len(self.names)  # features + presence flags
        self.mlp = nn.Sequential(
            MLP(width, hidden_dim, hidden_dim, num_layers, activation, dropout, norm),
            make_activation(activation),
            Dropout(dropout),
        )
        self.out_dim = hidden_dim

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Fuse pooled modality vectors.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.features: (B, H) with H = ``hidden_dim``
        """
        check_fusion_inputs(self, inputs, present)
        feats: list[Tensor] = []
        flags: list[Tensor] = []
        for name in self.names:  # sorted: the concatenation order never depends on dict order
            x, p = inputs[name].pooled, present[name]  # (B, D_m), (B,)
            feats.append(zero_absent(x, p))
            flags.append(p.to(x.dtype))
        z = torch.cat([*feats, torch.stack(flags, dim=1)], dim=1)  # (B, sum D_m + M)
        return FusionOutput(features=self.mlp(z))  # (B, H)


__all__ = ["EarlyFusion"]
