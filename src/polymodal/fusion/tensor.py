"""Tensor fusion (TFN, Zadeh et al. 2017) and its low-rank form (LMF, Liu et al. 2018).

Both fuse the vectors ``[h_m; 1]`` of all modalities multiplicatively, so the result holds
every unimodal, bimodal, ..., M-modal interaction term.  The appended 1 is what makes a
missing modality easy to handle: with ``h_m = 0`` its vector is ``[0; 1]``, which keeps
every term of the other modalities and drops exactly the terms that involve ``m``.
"""

from __future__ import annotations

import math

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

#: Largest flattened outer product :class:`TensorFusion` agrees to build.
MAX_PRODUCT_DIM = 1 << 20


def _append_one(h: Tensor) -> Tensor:
    """``[h; 1]``: (B, D) -> (B, D + 1)."""
    return torch.cat([h, torch.ones_like(h[:, :1])], dim=1)


@FUSIONS.register(
    "tensor",
    "TFN: outer product of [projected h_m; 1] over modalities, then an MLP.",
    kind="feature",
)
class TensorFusion(Fusion):
    """Tensor Fusion Network (Zadeh et al. 2017, "Tensor Fusion Network for Multimodal
    Sentiment Analysis", EMNLP), for any number of modalities.

    Each modality's pooled vector is projected to a small width P (``proj_dim``),
    ``h_m = W_m x_m + b_m``, so that the product stays small; the fused tensor is the outer
    product ``z = [h_1; 1] ⊗ [h_2; 1] ⊗ ... ⊗ [h_M; 1]`` over the modalities in sorted
    order, flattened row-major (the first modality's index varies slowest) to
    (B, (P + 1)^M); an MLP (``num_layers`` linear layers, each followed by the activation
    and dropout) maps it to the fused output (B, H).

    Missing modalities: an absent modality uses ``h_m = 0`` (``torch.where``, so its
    encoder's values never leak), i.e. the vector ``[0; 1]``.  Its outer product is then
    zero except on the slice where ``m``'s index is the appended 1, and that slice equals
    the outer product of the other modalities: the unimodal and cross-modal terms of the
    present modalities are kept, every term involving ``m`` is zero.  With no modality
    present ``z`` is a single 1 at the last position and the output is finite.

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        proj_dim: P, the width each modality is projected to before the outer product.
        hidden_dim: H, the MLP width and the fused output size.
        num_layers: linear layers in the post-fusion MLP (>= 1).
        activation: ``"gelu"``, ``"relu"``, ``"silu"`` or ``"tanh"``.
        dropout: dropout probability after each activation.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        proj_dim: int = 8,
        hidden_dim: int = 128,
        num_layers: int = 1,
        activation: str = "gelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        check_positive_int(owner, "proj_dim", proj_dim)
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers)
        dropout = check_probability(owner, "dropout", dropout)
        self.product_dim = (proj_dim + 1) ** len(self.names)
        if self.product_dim > MAX_PRODUCT_DIM:
            raise ValueError(
                f"{owner}: the outer product of {len(self.names)} modalities with "
                f"proj_dim={proj_dim} has (proj_dim + 1)^M = {self.product_dim} features, "
                f"more than {MAX_PRODUCT_DIM}. Lower proj_dim or use the 'lowrank' fusion."
            )
        self.proj = nn.ModuleDict({n: nn.Linear(d, proj_dim) for n, d in self.in_dims.items()})
        self.post = nn.Sequential(
            MLP(self.product_dim, hidden_dim, hidden_dim, num_layers, activation, dropout),
            make_activation(activation),
            Dropout(dropout),
        )
        self.out_dim = hidden_dim

    def tensor_product(
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> Tensor:
        """The flattened outer product ``z`` of the ``[h_m; 1]``, (B, (P + 1)^M)."""
        first = inputs[self.names[0]].pooled
        z = torch.ones(first.shape[0], 1, dtype=first.dtype, device=first.device)  # (B, 1)
        for name in self.names:
            h = zero_absent(self.proj[name](inputs[name].pooled), present[name])  # (B, P)
            hz = _append_one(h)  # (B, P + 1)
            z = (z[:, :, None] * hz[:, None, :]).flatten(1)  # (B, prev * (P + 1))
        return z

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Outer product of the projected modality vectors, then an MLP.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.features: (B, H)
        """
        check_fusion_inputs(self, inputs, present)
        return FusionOutput(features=self.post(self.tensor_product(inputs, present)))


@FUSIONS.register(
    "lowrank", "LMF: rank-r modality-specific factors of the TFN weight tensor.", kind="feature"
)
class LowRankFusion(Fusion):
    """Low-rank Multimodal Fusion (Liu et al. 2018, "Efficient Low-rank Multimodal Fusion with
    Modality-Specific Factors", ACL), for any number of modalities.

    TFN's weight tensor ``W`` of shape (D_1 + 1, ..., D_M + 1, H) is replaced by a rank-r
    decomposition ``W = sum_i lambda_i ⊗_m W_m^(i)`` with modality-specific factors
    ``W_m^(i)`` (D_m + 1, H), so the fused vector is computed without building the outer
    product:

        fused = sum_i lambda_i * prod_m ([x_m; 1] W_m^(i)) + b          (B, H)

    which equals ``z · W + b`` for the explicit outer product ``z`` of the ``[x_m; 1]``.
    It works on the pooled vectors directly (no projection); cost is linear in M.

    Missing modalities: an absent modality uses ``x_m = 0`` (``torch.where``, so its
    encoder's values never leak), i.e. ``[0; 1]``, and its factor contributes only its last
    row, a learned constant per rank: exactly the TFN convention of keeping the other
    modalities' terms.  With no modality present the output is a finite constant.

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        rank: r, the number of rank-one terms.
        hidden_dim: H, the fused output size.
        dropout: dropout on each ``x_m`` before the 1 is appended.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        rank: int = 4,
        hidden_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        check_positive_int(owner, "rank", rank)
        check_positive_int(owner, "hidden_dim", hidden_dim)
        dropout = check_probability(owner, "dropout", dropout)
        self.factors = nn.ParameterDict(
            {n: nn.Parameter(torch.empty(rank, d + 1, hidden_dim)) for n, d in self.in_dims.items()}
        )
        self.rank_weights = nn.Parameter(torch.empty(rank))
        self.bias = nn.Parameter(torch.zeros(hidden_dim))
        self.drop = Dropout(dropout)
        self.rank = rank
        self.out_dim = hidden_dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Factors ~ N(0, 1 / (D_m + 1)) and rank weights ~ N(0, 1 / r), bias 0.

        Each factor then maps ``[x; 1]`` with unit-variance entries to unit variance, so the
        product over modalities neither explodes nor vanishes with M.
        """
        for name in self.names:
            factor = self.factors[name]
            nn.init.normal_(factor, std=1.0 / math.sqrt(factor.shape[1]))
        nn.init.normal_(self.rank_weights, std=1.0 / math.sqrt(self.rank))
        nn.init.zeros_(self.bias)

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Low-rank multilinear fusion of the pooled vectors.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.features: (B, H)
        """
        check_fusion_inputs(self, inputs, present)
        terms = []
        for name in self.names:
            x = self.drop(zero_absent(inputs[name].pooled, present[name]))  # (B, D_m)
            x1 = _append_one(x)  # (B, D_m + 1)
            terms.append(torch.einsum("bd,rdh->brh", x1, self.factors[name]))  # (B, r, H)
        prod = terms[0]
        for term in terms[1:]:
            prod = prod * term  # (B, r, H)
        fused = torch.einsum("r,brh->bh", self.rank_weights, prod) + self.bias  # (B, H)
        return FusionOutput(features=fused)


__all__ = ["MAX_PRODUCT_DIM", "LowRankFusion", "TensorFusion"]
