"""The named outputs every tier returns: encoders, fusions, decision-level fusions, models.

One module that encoders, fusions and models all import, so no tier reaches into
another's files for a type, and a reader finds every output's shapes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor


@dataclass
class EncoderOutput:
    """What every encoder returns.

    Attributes:
        sequence: (B, L, D) per-step features (L = 1 for non-sequential inputs).
        mask: (B, L) bool, True at valid steps (False at padding and for absent examples'
            steps beyond their length).
        pooled: (B, D) one vector per example (masked mean or a CLS token).
    """

    sequence: Tensor
    mask: Tensor
    pooled: Tensor


@dataclass
class FusionOutput:
    """What every (feature-level) fusion returns.

    Attributes:
        features: (B, out_dim) the fused representation, which a model's head maps to
            predictions.
        weights: (B, M) per-example modality weights (attention, gates) in sorted-modality
            order, for inspection; ``None`` for strategies without such weights.
    """

    features: Tensor
    weights: Tensor | None = None


@dataclass
class DecisionOutput:
    """What a decision-level fusion (:mod:`polymodal.models.decision`) returns.

    Attributes:
        logits: (B, K) the combined predictions.
        modality_logits: modality name -> (B, K) each modality's own predictions (zero
            where the modality is absent), for per-modality losses and inspection.
        weights: (B, M) each modality's share of ``logits`` in sorted-modality order.
    """

    logits: Tensor
    modality_logits: dict[str, Tensor]
    weights: Tensor | None = None


@dataclass
class ModelOutput:
    """What :class:`~polymodal.models.multimodal.MultimodalModel` returns.

    Attributes:
        logits: (B, K) for classification (class logits) and multilabel (label logits);
            (B,) for regression, the K = 1 axis squeezed so that it lines up with the
            (B,) regression targets of :class:`~polymodal.data.sample.Batch` (a (B, 1) vs
            (B,) loss would silently broadcast to (B, B)).
        features: (B, D) the fused representation the head read (feature-level fusion);
            ``None`` for a decision-level fusion, which has no joint representation.
        modality_logits: modality name -> per-modality logits, shaped like ``logits``
            (zero where the modality is absent), from decision-level fusions; else
            ``None``.
        weights: (B, M) per-example modality weights in sorted-modality order, from
            fusions that have them; else ``None``.
    """

    logits: Tensor
    features: Tensor | None = None
    modality_logits: dict[str, Tensor] | None = None
    weights: Tensor | None = None


def model_logits(out: Any) -> Tensor:
    """The logits of a model's output (a ``ModelOutput`` or a bare tensor)."""
    logits = out.logits if hasattr(out, "logits") else out
    if not isinstance(logits, Tensor):
        raise TypeError(
            f"The model must return a Tensor or an object with a .logits Tensor (ModelOutput); "
            f"got {type(out).__name__}."
        )
    return logits


__all__ = ["DecisionOutput", "EncoderOutput", "FusionOutput", "ModelOutput", "model_logits"]
