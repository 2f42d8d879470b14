"""Late (decision-level) fusion: one head per modality, predictions combined."""

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
from polymodal.registry import unknown_name_error

COMBINES = ("mean", "learned", "stacking")


def _modality_head(in_dim: int, num_outputs: int, hidden_dim: int, dropout: float) -> nn.Module:
    """Dropout, then linear (``hidden_dim == 0``) or one hidden GELU layer, D_m -> K."""
    layers = 1 if hidden_dim == 0 else 2
    return nn.Sequential(
        nn.Dropout(dropout),
        MLP(in_dim, num_outputs, hidden_dim or None, layers, "gelu", dropout),
    )


class LateFusion(Fusion):
    """Decision-level fusion: each modality predicts on its own, predictions are combined.

    Every modality m has a head mapping its pooled vector to (B, K) logits (K =
    ``num_outputs``).  ``combine`` decides how the per-modality logits become one:

    - ``"mean"``: average over the modalities present in each example.
    - ``"learned"``: a weighted average with weights ``softmax(w)`` over learned per-modality
      scores ``w`` (initialised equal), renormalised over the modalities present in each
      example.
    - ``"stacking"``: a linear layer over the concatenated per-modality logits and the M
      presence flags (a meta-learner).  It is initialised to the plain average of all
      modalities, so training starts from ``"mean"`` behaviour when all are present.

    Missing modalities: an absent modality's logits are set to zero (``torch.where``, so its
    encoder's values for that row never leak) and its weight is zero.  For ``"mean"`` and
    ``"learned"`` an example's output therefore equals the output of the same fusion built
    without the absent modality.  An example missing every modality gets zeros from
    ``"mean"``/``"learned"`` (uniform class probabilities, 0.5 per label, 0 for regression)
    and the stacking layer's bias (a learned prior) from ``"stacking"``; its weights row is all
    zeros.

    Outputs: ``fused`` is the combined (B, K) logits; ``modality_logits`` maps each modality
    to its (B, K) logits (zero where absent); ``weights`` is (B, M) in sorted-modality order,
    summing to 1 over present modalities (0 where none is present).  For ``"stacking"`` the
    weights are each modality's share of the summed absolute contribution to the stacked
    logits, for inspection only (detached).

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        num_outputs: K, the number of logits per example.
        combine: ``"mean"``, ``"learned"`` or ``"stacking"``.
        hidden_dim: 0 for linear per-modality heads, else the width of their hidden layer.
        dropout: dropout probability inside the per-modality heads.
    """

    decision_level = True

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        combine: str = "mean",
        hidden_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims, num_outputs)
        owner = type(self).__name__
        if combine not in COMBINES:
            raise unknown_name_error("late-fusion combine", combine, list(COMBINES))
        check_positive_int(owner, "num_outputs", num_outputs)
        check_positive_int(owner, "hidden_dim", hidden_dim, minimum=0)
        dropout = check_probability(owner, "dropout", dropout)
        self.combine = combine
        self.out_dim = num_outputs
        self.heads = nn.ModuleDict(
            {
                n: _modality_head(d, num_outputs, hidden_dim, dropout)
                for n, d in self.in_dims.items()
            }
        )
        m, k = len(self.names), num_outputs
        self.modality_scores: nn.Parameter | None = None
        self.stack: nn.Linear | None = None
        if combine == "learned":
            self.modality_scores = nn.Parameter(torch.zeros(m))  # (M,) softmax -> weights
        elif combine == "stacking":
            self.stack = nn.Linear(m * k + m, k)
            with torch.no_grad():  # start as the mean over all modalities
                self.stack.weight.zero_()
                eye = torch.eye(k) / m
                for i in range(m):
                    self.stack.weight[:, i * k : (i + 1) * k] = eye
                self.stack.bias.zero_()

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Predict per modality and combine.

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
        pres = presence_matrix(self, present)  # (B, M) bool
        logits: dict[str, Tensor] = {}
        for i, name in enumerate(self.names):
            out = self.heads[name](inputs[name].pooled)  # (B, K)
            logits[name] = zero_absent(out, pres[:, i])
        stacked = torch.stack([logits[n] for n in self.names], dim=1)  # (B, M, K)
        flags = pres.to(stacked.dtype)  # (B, M)

        if self.stack is not None:
            b, m, k = stacked.shape
            fused = self.stack(torch.cat([stacked.reshape(b, m * k), flags], dim=1))  # (B, K)
            with torch.no_grad():
                w_blocks = self.stack.weight[:, : m * k].reshape(k, m, k)  # (K_out, M, K_in)
                contrib = torch.einsum("bmk,jmk->bmj", stacked, w_blocks).abs().sum(-1)  # (B, M)
                weights = _normalise(contrib * flags)
            return FusionOutput(fused=fused, modality_logits=logits, weights=weights)

        if self.modality_scores is not None:
            prior = torch.softmax(self.modality_scores, dim=0).to(stacked.dtype)  # (M,)
            weights = _normalise(prior[None, :] * flags)  # (B, M)
        else:
            weights = _normalise(flags)
        fused = (weights[:, :, None] * stacked).sum(dim=1)  # (B, K)
        return FusionOutput(fused=fused, modality_logits=logits, weights=weights)


def _normalise(w: Tensor) -> Tensor:
    """Rows of non-negative ``w`` (B, M) scaled to sum 1; all-zero rows stay zero."""
    total = w.sum(dim=1, keepdim=True)  # (B, 1)
    return w / torch.where(total > 0, total, torch.ones_like(total))  # finite grads too


@FUSIONS.register(
    "late", "Decision level: a head per modality; mean, learned-weight or stacked logits."
)
def build_late(
    in_dims: dict[str, int],
    num_outputs: int,
    combine: str = "mean",
    hidden_dim: int = 0,
    dropout: float = 0.0,
) -> LateFusion:
    """Build :class:`LateFusion` (decision level; fused is (B, num_outputs) logits)."""
    return LateFusion(in_dims, num_outputs, combine, hidden_dim, dropout)


__all__ = ["COMBINES", "LateFusion", "build_late"]
