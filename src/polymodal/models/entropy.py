"""MLA's test-time fusion of unimodal predictions, weighted by their confidence.

A model trained with ``optim.balance: mla`` (Zhang et al., CVPR 2024, "Multimodal
Representation Learning by Alternating Unimodal Adaptation") learns each modality alone
through a shared head; at test its modalities predict one at a time and the predictions are
averaged with weights from their entropies (or, with ``optim.balance.mla_fusion:
calibrated``, their logits averaged after a temperature per modality fitted on validation).
Training evaluates with :class:`EntropyFusion` (:mod:`polymodal.training.balance`), and
:func:`polymodal.inference.load_trained` wraps an MLA run's model in it, so ``evaluate``,
``predict`` and every command read the model as it was selected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.sample import Batch
from polymodal.outputs import ModelOutput, model_logits


def only_modality(batch: Batch, name: str) -> tuple[Batch, Tensor]:
    """``batch`` with every modality but ``name`` marked absent where ``name`` is present.

    Rows where ``name`` itself is absent keep their modalities (so no row is left with
    none); the returned mask says which rows really show ``name`` alone.

    Shape:
        - return[1]: (B,) bool, ``batch[name].present``
    """
    keep = batch[name].present.to(torch.bool)  # (B,)
    mods = {n: (mb if n == name else mb.with_present(~keep)) for n, mb in batch.modalities.items()}
    return Batch(mods, batch.target, batch.ids), keep


class EntropyFusion(nn.Module):
    """MLA's test-time fusion: each modality predicts alone, and the predictions are combined.

    ``combine="entropy"`` (the paper's): the class probabilities are averaged with weights
    ``softmax(-entropy)`` over the modalities an example has, i.e.
    ``exp(max_j H_j - H_m) / sum_i exp(max_j H_j - H_i)`` (Zhang et al., eq. 8-9).

    ``combine="calibrated"``: the mean of the modalities' logits, each divided by its own
    temperature (the ``log_inv_temperature`` buffer, fitted on the validation split by
    :func:`polymodal.training.calibration.fit_temperatures`, as a calibrated late fusion's).
    A modality whose confidence does not carry to new speakers or subjects is softened
    instead of outvoting the others by its low entropy.

    Args:
        model: the trained model; names: its (sorted) modalities.
        combine: ``entropy`` or ``calibrated``.

    Shape:
        - output.logits: (B, K), the log of the fused probabilities (``entropy``) or the
          fused logits (``calibrated``)
        - output.modality_logits[m]: (B, K), temperature-scaled under ``calibrated``
        - output.weights: (B, M), zero for an absent modality
    """

    COMBINES = ("entropy", "calibrated")
    log_inv_temperature: Tensor  # (M,) buffer; 0 = temperature 1; used by "calibrated"

    def __init__(self, model: nn.Module, names: Sequence[str], combine: str = "entropy") -> None:
        super().__init__()
        if combine not in self.COMBINES:
            raise ValueError(
                f"The 'combine' parameter of MLA's test-time fusion must be one of "
                f"{list(self.COMBINES)}; got {combine!r}."
            )
        self.model = model
        self.names = list(names)
        self.combine = combine
        self.calibrate = combine == "calibrated"
        self.task = getattr(model, "task", "classification")
        self.num_outputs = getattr(model, "num_outputs", None)
        self.register_buffer("log_inv_temperature", torch.zeros(len(self.names)))

    def forward(self, batch: Batch) -> ModelOutput:
        logits: dict[str, Tensor] = {}
        flags = []
        inv_t = self.log_inv_temperature.exp() if self.calibrate else None  # (M,)
        for i, m in enumerate(self.names):
            alone, keep = only_modality(batch, m)
            z = model_logits(self.model(alone)).float()  # (B, K)
            logits[m] = z if inv_t is None else z * inv_t[i]
            flags.append(keep.float())
        stacked = torch.stack([logits[m] for m in self.names], dim=1)  # (B, M, K)
        fused, w = self.combine_logits(stacked, torch.stack(flags, dim=1))
        return ModelOutput(fused, None, logits, w)

    def combine_logits(self, stacked: Tensor, flags: Tensor) -> tuple[Tensor, Tensor]:
        """Combine per-modality logits into ``(fused, weights)``.

        Shape:
            - stacked: (B, M, K); flags: (B, M) float, 1 where the modality is present
            - return: (B, K) fused logits, (B, M) modality weights
        """
        present = flags > 0
        if self.calibrate:
            w = flags / flags.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, M)
            return (w[:, :, None] * stacked).sum(1), w
        p = stacked.softmax(-1)  # (B, M, K)
        h = -(p * F.log_softmax(stacked, -1)).sum(-1)  # (B, M) entropies
        h = h.masked_fill(~present, math.inf)  # an absent modality gets no weight
        none = torch.isinf(h).all(dim=1, keepdim=True)  # (B, 1): no modality present
        w = torch.where(none, torch.zeros_like(h), -h).softmax(dim=1)  # (B, M)
        fused = (w[:, :, None] * p).sum(1)  # (B, K)
        return fused.clamp_min(1e-12).log(), w

    @property
    def encoders(self) -> nn.Module:
        """The wrapped model's encoders (linear probes read them)."""
        return self.model.encoders  # type: ignore[return-value]


__all__ = ["EntropyFusion", "only_modality"]
