"""Decision-level fusion: each modality predicts, and the predictions are combined.

These strategies produce the model's logits themselves, so they live with the models, not
with the feature-level fusions of :mod:`polymodal.fusion` (which return a representation a
head reads).  They are registered in the same :data:`~polymodal.fusion.base.FUSIONS`
registry with ``kind="decision"``, so a config names them like any fusion
(``model.fusion.name=late``) and :func:`~polymodal.models.build.build_model` wires them in
place of "fusion + head".

- ``late``: one head per modality; mean logits, mean probabilities, learned-weight or
  stacked logits.
- ``hybrid``: a joint (early) head plus per-modality heads, mixed by a learned share.

Both return :class:`~polymodal.outputs.DecisionOutput`: combined logits, each modality's
own logits (for per-modality losses, ``optim.aux_loss_weight``) and the modality weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polymodal.errors import unknown_name_error
from polymodal.fusion.base import (
    FUSIONS,
    check_fusion_inputs,
    check_positive_int,
    check_probability,
    presence_matrix,
    zero_absent,
)
from polymodal.layers.dropout import Dropout
from polymodal.layers.mlp import MLP
from polymodal.outputs import DecisionOutput, EncoderOutput

COMBINES = ("mean", "mean_probs", "learned", "stacking")


class DecisionFusion(nn.Module):
    """Base of decision-level fusions: pooled encodings + presence in, logits out.

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        num_outputs: K, logits per example (set by ``build_model`` from the target).

    Modalities are processed in sorted name order so results never depend on dict order.
    """

    def __init__(self, in_dims: dict[str, int], num_outputs: int) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("A fusion module needs at least one modality in in_dims")
        check_positive_int(type(self).__name__, "num_outputs", num_outputs)
        self.in_dims = dict(sorted(in_dims.items()))
        self.names = list(self.in_dims)
        self.num_outputs = num_outputs
        self.out_dim = num_outputs

    def forward(  # pragma: no cover - abstract
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> DecisionOutput:
        raise NotImplementedError


def _modality_head(in_dim: int, num_outputs: int, hidden_dim: int, dropout: float) -> nn.Module:
    """Dropout, then linear (``hidden_dim == 0``) or one hidden GELU layer, D_m -> K."""
    layers = 1 if hidden_dim == 0 else 2
    return nn.Sequential(
        Dropout(dropout),
        MLP(in_dim, num_outputs, hidden_dim or None, layers, "gelu", dropout),
    )


@FUSIONS.register(
    "late",
    "Decision level: a head per modality; mean, learned-weight or stacked logits, or mean probs.",
    kind="decision",
)
class LateFusion(DecisionFusion):
    """Decision-level fusion: each modality predicts on its own, predictions are combined.

    Every modality m has a head mapping its pooled vector to (B, K) logits (K =
    ``num_outputs``).  ``combine`` decides how the per-modality logits become one:

    - ``"mean"``: average over the modalities present in each example.  Averaging logits
      multiplies the modalities' class probabilities (the "product rule" of Kittler et al.
      1998, "On combining classifiers", IEEE TPAMI), so a modality that is confidently
      wrong can outvote a confident right one, or even make a third class win.
    - ``"mean_probs"``: average of the modalities' class probabilities (softmax), the
      "sum rule" (scikit-learn's soft voting): the output logits are ``log(mean_m p_m)``,
      so cross-entropy trains the mixture, and one confidently wrong modality can at most
      halve the right class's probability (of two).  Single-label classification only.
    - ``"learned"``: a weighted average with weights ``softmax(w)`` over learned per-modality
      scores ``w`` (initialised equal), renormalised over the modalities present in each
      example.
    - ``"stacking"``: a linear layer over the concatenated per-modality logits and the M
      presence flags (a meta-learner).  It is initialised to the plain average of all
      modalities, so training starts from ``"mean"`` behaviour when all are present.

    ``calibrate=True`` adds one temperature per modality, fitted after every validation pass
    on the validation split (temperature scaling, Guo et al. 2017, "On calibration of modern
    neural networks", one temperature per modality as in calibrated classifier
    combination): each modality's logits are divided by its temperature before they are
    combined, with the temperatures that minimise the fused prediction's cross-entropy on
    validation (:func:`polymodal.training.calibration.fit_temperatures`).  A modality that
    is confidently wrong on held-out examples (a voice on new speakers) gets a high
    temperature, so it stops outvoting the others.  Training never sees the temperatures:
    they act in eval mode only, and they are saved with the weights (buffer
    ``log_inv_temperature``, (M,), 0 = temperature 1).  Not with ``"stacking"``, whose layer
    already weighs the modalities; single-label classification only.

    Missing modalities: an absent modality's logits are set to zero (``torch.where``, so its
    encoder's values for that row never leak) and its weight is zero.  For ``"mean"`` and
    ``"learned"`` an example's output therefore equals the output of the same fusion built
    without the absent modality.  An example missing every modality gets zeros from
    ``"mean"``/``"learned"`` (uniform class probabilities, 0.5 per label, 0 for regression)
    and the stacking layer's bias (a learned prior) from ``"stacking"``; its weights row is all
    zeros.

    Outputs: ``logits`` is the combined (B, K) prediction; ``modality_logits`` maps each modality
    to its (B, K) logits (zero where absent); ``weights`` is (B, M) in sorted-modality order,
    summing to 1 over present modalities (0 where none is present).  For ``"stacking"`` the
    weights are each modality's share of the summed absolute contribution to the stacked
    logits, for inspection only (detached).

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        num_outputs: K, the number of logits per example.
        combine: ``"mean"``, ``"mean_probs"``, ``"learned"`` or ``"stacking"``.
        hidden_dim: 0 for linear per-modality heads, else the width of their hidden layer.
        dropout: dropout probability inside the per-modality heads.
        calibrate: fit per-modality temperatures on the validation split (see above).
    """

    log_inv_temperature: Tensor  # (M,) buffer, with calibrate=True only

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        combine: str = "mean",
        hidden_dim: int = 0,
        dropout: float = 0.0,
        calibrate: bool = False,
    ) -> None:
        super().__init__(in_dims, num_outputs)
        owner = type(self).__name__
        if combine not in COMBINES:
            raise unknown_name_error("late-fusion combine", combine, list(COMBINES))
        if not isinstance(calibrate, bool):
            raise TypeError(
                f"late fusion: calibrate must be true or false, got {calibrate!r} "
                f"({type(calibrate).__name__}). Write calibrate: true in the config."
            )
        if calibrate and combine == "stacking":
            raise ValueError(
                "late fusion: calibrate=True fits one temperature per modality, but combine "
                "'stacking' already learns how to weigh each modality's logits. Use calibrate="
                "false with 'stacking', or combine 'mean', 'mean_probs' or 'learned'."
            )
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
        self.calibrate = calibrate
        if self.calibrate:  # (M,) log(1 / temperature); 0 until fitted
            self.register_buffer("log_inv_temperature", torch.zeros(m))
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

    def forward(
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> DecisionOutput:
        """Predict per modality and combine.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.logits: (B, K)
            - output.modality_logits[m]: (B, K)
            - output.weights: (B, M), sorted-modality order
        """
        check_fusion_inputs(self, inputs, present)
        pres = presence_matrix(self, present)  # (B, M) bool
        inv_t = self.inverse_temperatures()  # (M,) or None (training, or not calibrated)
        logits: dict[str, Tensor] = {}
        for i, name in enumerate(self.names):
            out = self.heads[name](inputs[name].pooled)  # (B, K)
            if inv_t is not None:
                out = out * inv_t[i].to(out.dtype)
            logits[name] = zero_absent(out, pres[:, i])
        stacked = torch.stack([logits[n] for n in self.names], dim=1)  # (B, M, K)
        fused, weights = self.combine_logits(stacked, pres.to(stacked.dtype))
        return DecisionOutput(logits=fused, modality_logits=logits, weights=weights)

    def inverse_temperatures(self) -> Tensor | None:
        """``1 / temperature`` per modality (M,), sorted-modality order, when they apply:
        ``calibrate=True`` and eval mode; else ``None``."""
        if not self.calibrate or self.training:
            return None
        return self.log_inv_temperature.exp()

    def combine_logits(self, stacked: Tensor, flags: Tensor) -> tuple[Tensor, Tensor]:
        """Combine per-modality logits (absent ones zero) into ``(fused, weights)``.

        Shape:
            - stacked: (B, M, K); flags: (B, M) float, 1 where present
            - return: (B, K) fused logits, (B, M) modality weights
        """
        if self.stack is not None:
            b, m, k = stacked.shape
            fused = self.stack(torch.cat([stacked.reshape(b, m * k), flags], dim=1))  # (B, K)
            with torch.no_grad():
                w_blocks = self.stack.weight[:, : m * k].reshape(k, m, k)  # (K_out, M, K_in)
                contrib = torch.einsum("bmk,jmk->bmj", stacked, w_blocks).abs().sum(-1)  # (B, M)
                weights = _normalise(contrib * flags)
            return fused, weights

        if self.modality_scores is not None:
            prior = torch.softmax(self.modality_scores, dim=0).to(stacked.dtype)  # (M,)
            weights = _normalise(prior[None, :] * flags)  # (B, M)
        else:
            weights = _normalise(flags)
        if self.combine == "mean_probs":
            fused = _log_mean_probs(stacked, weights)  # (B, K)
        else:
            fused = (weights[:, :, None] * stacked).sum(dim=1)  # (B, K)
        return fused, weights

    @staticmethod
    def check_task(task: str, params: dict[str, Any]) -> None:
        """Refuse a ``combine`` or ``calibrate`` that does not fit the target's ``task``
        (before building)."""
        if params.get("combine") == "mean_probs" and task != "classification":
            raise ValueError(
                f"late fusion: combine 'mean_probs' averages class probabilities (a softmax "
                f"over classes), which needs a single-label classification target; this data "
                f"set's target is {task!r}. Use combine 'mean' (or 'learned', 'stacking')."
            )
        if params.get("calibrate") is True and task != "classification":
            raise ValueError(
                f"late fusion: calibrate=True fits temperatures by the cross-entropy of a "
                f"single-label classification target; this data set's target is {task!r}. "
                "Set calibrate: false."
            )


def _log_mean_probs(logits: Tensor, weights: Tensor) -> Tensor:
    """``log(sum_m w_m softmax(logits_m))``, computed in log space; rows with no weight
    (no modality present) get zeros (uniform probabilities), with finite gradients.

    Shape:
        logits: (B, M, K); weights: (B, M), rows summing to 1 or all zero; output: (B, K)
    """
    none = ~(weights > 0).any(dim=1, keepdim=True)  # (B, 1): no modality present
    w = torch.where(none, torch.full_like(weights, 1.0 / weights.shape[1]), weights)  # (B, M)
    on = w > 0
    log_w = torch.where(on, torch.where(on, w, torch.ones_like(w)).log(), -torch.inf)
    mixed = torch.logsumexp(log_w[:, :, None] + torch.log_softmax(logits, dim=-1), dim=1)
    return torch.where(none, torch.zeros_like(mixed), mixed)  # (B, K)


def _normalise(w: Tensor) -> Tensor:
    """Rows of non-negative ``w`` (B, M) scaled to sum 1; all-zero rows stay zero."""
    total = w.sum(dim=1, keepdim=True)  # (B, 1)
    return w / torch.where(total > 0, total, torch.ones_like(total))  # finite grads too


@FUSIONS.register(
    "hybrid",
    "Decision level: joint early head plus per-modality heads, learned mixture.",
    kind="decision",
)
class HybridFusion(DecisionFusion):
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

    Outputs: ``logits`` (B, K), ``fused`` below; ``modality_logits`` each modality's (B, K) logits
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
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers, minimum=2)
        check_positive_int(owner, "head_hidden_dim", head_hidden_dim, minimum=0)
        dropout = check_probability(owner, "dropout", dropout)
        m, k = len(self.names), num_outputs
        width = sum(self.in_dims.values()) + m
        self.joint = nn.Sequential(
            Dropout(dropout), MLP(width, k, hidden_dim, num_layers, "gelu", dropout)
        )
        head_layers = 1 if head_hidden_dim == 0 else 2
        self.heads = nn.ModuleDict(
            {
                n: nn.Sequential(
                    Dropout(dropout),
                    MLP(d, k, head_hidden_dim or None, head_layers, "gelu", dropout),
                )
                for n, d in self.in_dims.items()
            }
        )
        self.modality_scores = nn.Parameter(torch.zeros(m))  # (M,)
        self.mix = nn.Parameter(torch.zeros(()))  # sigmoid(0) = 0.5 late share
        self.out_dim = k

    def forward(
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> DecisionOutput:
        """Joint and per-modality predictions, combined.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.logits: (B, K)
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
        w = _normalise(prior[None, :] * flags)  # (B, M)
        lam = torch.sigmoid(self.mix) * pres.any(dim=1, keepdim=True).to(flags.dtype)  # (B, 1)
        weights = lam * w  # (B, M)
        late = torch.einsum("bm,bmk->bk", weights, stacked)  # (B, K)
        fused = (1 - lam) * joint + late  # (B, K)
        return DecisionOutput(logits=fused, modality_logits=logits, weights=weights)


__all__ = ["COMBINES", "DecisionFusion", "HybridFusion", "LateFusion"]
