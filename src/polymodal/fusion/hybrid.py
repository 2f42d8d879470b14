"""Hybrid fusion: an early (joint) path and late (per-modality) paths, combined."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.encoders.base import EncoderOutput
from polymodal.fusion.base import (
    FUSIONS,
    Fusion,
    FusionOutput,
    check_fusion_inputs,
    check_positive_int,
    check_probability,
    presence_matrix,
    zero_absent,
)
from polymodal.layers.mlp import MLP


class HybridFusion(Fusion):
    """Decision-level hybrid of early and late fusion (the "hybrid multimodal fusion" of
    Atrey et al. 2010, "Multimodal fusion for multimedia analysis: a survey", Multimedia
    Systems 16).

    Two kinds of predictors, each giving (B, K) logits (K = ``num_outputs``):

    - the joint (early) head: an MLP over the concatenated pooled vectors and M presence
      flags, ``j = MLP([x_1; ...; x_M; p_1..p_M])``;
    - one head per modality (late): ``l_m = head_m(x_m)``.

    They are combined as ``fused = (1 - lam) j + lam sum_m w_m l_m``, where
    ``w = softmax(s)`` over learned per-modality scores ``s`` renormalised over the
    modalities present in each example, and ``lam = sigmoid(a)`` is a learned share of the
    late path (initialised to 0.5).

    Missing modalities: an absent modality enters the joint head as zeros with flag 0
    (``torch.where``, so its encoder's values never leak); its late logits are set to zero and
    its weight ``w_m`` is 0.  An example with no modality present gets ``lam = 0``: its output
    is the joint head's output for the all-zero input (a learned prior), finite.

    Outputs: ``fused`` (B, K) logits; ``modality_logits`` each modality's (B, K) logits
    (zero where absent, for per-modality losses); ``weights`` (B, M) the share of each
    modality head in ``fused``, ``lam * w`` (the joint head has the rest,
    ``1 - weights.sum(1)``).

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        num_outputs: K, the number of logits per example.
        hidden_dim: width of the joint head's hidden layers.
        num_layers: linear layers in the joint head (>= 2: at least one hidden layer).
        head_hidden_dim: 0 for linear per-modality heads, else their hidden width.
        dropout: dropout inside every head.
    """

    decision_level = True

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        hidden_dim: int = 128,
        num_layers: int = 2,
        head_hidden_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims, num_outputs)
        owner = type(self).__name__
        check_positive_int(owner, "num_outputs", num_outputs)
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers, minimum=2)
        check_positive_int(owner, "head_hidden_dim", head_hidden_dim, minimum=0)
        dropout = check_probability(owner, "dropout", dropout)
        m, k = len(self.names), num_outputs
        width = sum(self.in_dims.values()) + m
        self.joint = nn.Sequential(
            nn.Dropout(dropout), MLP(width, k, hidden_dim, num_layers, "gelu", dropout)
        )
        head_layers = 1 if head_hidden_dim == 0 else 2
        self.heads = nn.ModuleDict(
            {
                n: nn.Sequential(
                    nn.Dropout(dropout),
                    MLP(d, k, head_hidden_dim or None, head_layers, "gelu", dropout),
                )
                for n, d in self.in_dims.items()
            }
        )
        self.modality_scores = nn.Parameter(torch.zeros(m))  # (M,)
        self.mix = nn.Parameter(torch.zeros(()))  # sigmoid(0) = 0.5 late share
        self.out_dim = k

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Joint and per-modality predictions, combined.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.fused: (B, K)
            - output.modality_logits[m]: (B, K)
            - output.weights: (B, M), sorted-modality order
        """
        check_fusion_inputs(self, inputs, present)
        pres = presence_matrix(self, present)  # (B, M)
        xs = [zero_absent(inputs[n].pooled, present[n]) for n in self.names]  # (B, D_m) each
        flags = pres.to(xs[0].dtype)  # (B, M)
        joint = self.joint(torch.cat([*xs, flags], dim=1))  # (B, K)
        logits = {
            n: zero_absent(self.heads[n](x), present[n])
            for n, x in zip(self.names, xs, strict=True)
        }  # (B, K) each
        stacked = torch.stack([logits[n] for n in self.names], dim=1)  # (B, M, K)
        prior = torch.softmax(self.modality_scores, dim=0).to(flags.dtype)  # (M,)
        w = prior[None, :] * flags  # (B, M)
        total = w.sum(dim=1, keepdim=True)  # (B, 1)
        w = w / torch.where(total > 0, total, torch.ones_like(total))
        lam = torch.sigmoid(self.mix) * pres.any(dim=1, keepdim=True).to(flags.dtype)  # (B, 1)
        weights = lam * w  # (B, M)
        late = torch.einsum("bm,bmk->bk", weights, stacked)  # (B, K)
        fused = (1 - lam) * joint + late  # (B, K)
        return FusionOutput(fused=fused, modality_logits=logits, weights=weights)


@FUSIONS.register(
    "hybrid", "Decision level: joint early head plus per-modality heads, learned mixture."
)
def build_hybrid(
    in_dims: dict[str, int],
    num_outputs: int,
    hidden_dim: int = 128,
    num_layers: int = 2,
    head_hidden_dim: int = 0,
    dropout: float = 0.0,
) -> HybridFusion:
    """Build :class:`HybridFusion` (decision level; fused is (B, num_outputs) logits)."""
    return HybridFusion(in_dims, num_outputs, hidden_dim, num_layers, head_hidden_dim, dropout)


__all__ = ["HybridFusion", "build_hybrid"]
