"""MLA's test-time fusion of unimodal predictions, weighted by their confidence.

A model trained with ``optim.balance: mla`` (Zhang et al., CVPR 2024, "Multimodal
Representation Learning by Alternating Unimodal Adaptation") learns each modality alone
through a shared head; at test its modalities predict one at a time and the predictions are
averaged with weights from their entropies.  Training evaluates with
:class:`EntropyFusion` (:mod:`polymodal.training.balance`), and
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
    """MLA's test-time fusion: each modality predicts alone; the class probabilities are
    averaged with weights ``softmax(-entropy)`` over the modalities an example has, i.e.
    ``exp(max_j H_j - H_m) / sum_i exp(max_j H_j - H_i)`` (Zhang et al., eq. 8-9).

    Args:
        model: the trained model; names: its (sorted) modalities.

    Shape:
        - output.logits: (B, K), the log of the fused probabilities
        - output.modality_logits[m]: (B, K)
        - output.weights: (B, M), zero for an absent modality
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.task = getattr(model, "task", "classification")
        self.num_outputs = getattr(model, "num_outputs", None)

    def forward(self, batch: Batch) -> ModelOutput:
        logits: dict[str, Tensor] = {}
        probs, entropies = [], []
        for m in self.names:
            alone, keep = only_modality(batch, m)
            z = model_logits(self.model(alone)).float()  # (B, K)
            p = z.softmax(-1)
            h = -(p * F.log_softmax(z, -1)).sum(-1)  # (B,)
            logits[m] = z
            probs.append(p)
            entropies.append(h.masked_fill(~keep, math.inf))
        e = torch.stack(entropies, dim=1)  # (B, M)
        none = torch.isinf(e).all(dim=1, keepdim=True)  # (B, 1): no modality present
        w = torch.where(none, torch.zeros_like(e), -e).softmax(dim=1)  # (B, M)
        fused = (w[:, :, None] * torch.stack(probs, dim=1)).sum(1)  # (B, K)
        return ModelOutput(fused.clamp_min(1e-12).log(), None, logits, w)

    @property
    def encoders(self) -> nn.Module:
        """The wrapped model's encoders (linear probes read them)."""
        return self.model.encoders  # type: ignore[return-value]


__all__ = ["EntropyFusion", "only_modality"]
