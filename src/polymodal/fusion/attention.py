"""Attention over modality embeddings: one learned score per modality, softmax over present ones."""

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

# --------------------------------------------------------------------------- attention fusion


@FUSIONS.register(
    "attention",
    "Softmax attention over projected modality embeddings (present ones only).",
    kind="feature",
)
class AttentionFusion(Fusion):
    """Soft attention over modality embeddings (Hori et al. 2017, "Attention-Based Multimodal
    Fusion for Video Description", ICCV; additive scoring as in Bahdanau et al. 2015).

    Each modality's pooled vector is projected to a common width H, ``e_m = W_m x_m + b_m``;
    a shared additive scorer gives ``s_m = v^T tanh(U e_m + c)``; the weights
    ``alpha = softmax(s)`` are taken over the modalities present in each example and the
    fused vector is ``sum_m alpha_m e_m``.  The weights depend on the example's content.

    Missing modalities: an absent modality's score is masked out of the softmax, so its
    weight is exactly 0 and its embedding (computed from zeros, never from the encoder's
    values) does not reach the output.  With one modality present its weight is 1; with
    none present every weight is 0 and the fused vector is zeros.

    Outputs: ``features`` (B, H); ``weights`` (B, M) the attention weights in sorted-modality
    order, summing to 1 over present modalities (0 where none is present).

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        hidden_dim: H, the common embedding width and the fused output size.
        attention_dim: hidden width of the additive scorer.
        dropout: dropout on the modality embeddings before the weighted sum.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden_dim: int = 128,
        attention_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "attention_dim", attention_dim)
        dropout = check_probability(owner, "dropout", dropout)
        self.proj = nn.ModuleDict({n: nn.Linear(d, hidden_dim) for n, d in self.in_dims.items()})
        self.score = nn.Sequential(
            nn.Linear(hidden_dim, attention_dim),
            nn.Tanh(),
            nn.Linear(attention_dim, 1, bias=False),
        )
        self.drop = Dropout(dropout)
        self.out_dim = hidden_dim

    def embed(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> Tensor:
        """The modality embeddings ``e`` (B, M, H), absent rows projected from zeros."""
        return torch.stack(
            [self.proj[n](zero_absent(inputs[n].pooled, present[n])) for n in self.names], dim=1
        )

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Weight the modality embeddings by attention over the present modalities.

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
        pres = presence_matrix(self, present)  # (B, M)
        e = self.embed(inputs, present)  # (B, M, H)
        scores = self.score(e).squeeze(-1)  # (B, M)
        weights = masked_softmax(scores, pres, dim=1)  # (B, M)
        fused = torch.einsum("bm,bmh->bh", weights, self.drop(e))  # (B, H)
        return FusionOutput(features=fused, weights=weights)


__all__ = ["AttentionFusion"]
