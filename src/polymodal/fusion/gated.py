"""Gated Multimodal Unit (Arevalo et al. 2017), generalised from two to M modalities."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.fusion.base import (
    FUSIONS,
    Fusion,
    check_fusion_inputs,
    check_positive_int,
    check_probability,
    masked_softmax,
    presence_matrix,
    zero_absent,
)
from polymodal.layers.dropout import Dropout
from polymodal.outputs import EncoderOutput, FusionOutput


@FUSIONS.register(
    "gmu",
    "Gated Multimodal Unit: per-feature softmax gates over present modalities.",
    kind="feature",
)
class GatedMultimodalUnit(Fusion):
    """Gated Multimodal Unit (Arevalo et al. 2017, "Gated Multimodal Units for Information
    Fusion", ICLR workshop), for any number of modalities.

    Each modality gets a candidate ``h_m = tanh(W_m x_m)`` (B, H).  A gate network reads the
    concatenation of all pooled vectors and the M presence flags and gives per-feature gate
    logits ``g`` (B, M, H); the gates ``z = softmax_m(g)`` are normalised over the
    modalities present in each example, feature by feature, and the output is
    ``sum_m z_m * h_m`` (B, H).  For two modalities this is the paper's unit
    ``z h_1 + (1 - z) h_2`` with ``z = sigmoid(g_1 - g_2)``: softmax over two logits is the
    sigmoid of their difference.

    Missing modalities: an absent modality's pooled vector enters the gate network as zeros
    (``torch.where``, so encoder values of absent rows never leak), its flag is 0, and its
    gates are masked to exactly 0, so its candidate does not reach the output; the gates of
    the present modalities sum to 1 per feature.  An example with no modality present gets
    all-zero gates and a zero output.

    Outputs: ``features`` (B, H); ``weights`` (B, M), each modality's gate averaged over the H
    features (sums to 1 over present modalities, 0 where none is present).

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        hidden_dim: H, the width of the candidates and of the fused output.
        dropout: dropout on the candidates before gating.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        check_positive_int(owner, "hidden_dim", hidden_dim)
        dropout = check_probability(owner, "dropout", dropout)
        m = len(self.names)
        self.candidate = nn.ModuleDict(
            {n: nn.Linear(d, hidden_dim, bias=False) for n, d in self.in_dims.items()}
        )
        self.gate = nn.Linear(sum(self.in_dims.values()) + m, m * hidden_dim)
        self.drop = Dropout(dropout)
        self.hidden_dim = hidden_dim
        self.out_dim = hidden_dim

    def gates(
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The candidates ``h`` and gates ``z``, both (B, M, H), sorted-modality order."""
        pres = presence_matrix(self, present)  # (B, M)
        xs = [zero_absent(inputs[n].pooled, present[n]) for n in self.names]  # (B, D_m) each
        h = torch.stack(
            [torch.tanh(self.candidate[n](x)) for n, x in zip(self.names, xs, strict=True)],
            dim=1,
        )  # (B, M, H)
        logits = self.gate(torch.cat([*xs, pres.to(h.dtype)], dim=1))  # (B, M * H)
        logits = logits.view(-1, len(self.names), self.hidden_dim)  # (B, M, H)
        z = masked_softmax(logits, pres[:, :, None], dim=1)  # (B, M, H)
        return h, z

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Gate the modality candidates, feature by feature, over the present modalities.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.features: (B, H)
            - output.weights: (B, M), sorted-modality order
        """
        check_fusion_inputs(self, inputs, present)
        h, z = self.gates(inputs, present)  # (B, M, H) each
        fused = (z * self.drop(h)).sum(dim=1)  # (B, H)
        return FusionOutput(features=fused, weights=z.mean(dim=2))


__all__ = ["GatedMultimodalUnit"]
