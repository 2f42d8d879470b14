"""The encoder interface: one modality's :class:`ModalityBatch` in, :class:`EncoderOutput` out.

Every encoder is registered in :data:`ENCODERS` under a name, with the modality kinds it
accepts (``kind=``), either as its class (whose ``__init__(self, spec, dim=..., ...)`` is
the builder, so each default is written once) or, where building assembles parts (a
log-mel front end and a backbone, a frame encoder and a temporal model), as a builder
function ``builder(spec, dim=..., ...)``.  Either way the first parameter is the
modality's :class:`~polymodal.data.modality.ModalitySpec`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.outputs import EncoderOutput
from polymodal.registry import Registry


class Encoder(nn.Module):
    """Base class of all encoders.

    Subclasses set ``kind`` (the :class:`ModalityKind` they accept) and ``out_dim``
    (D of their outputs) and implement ``forward(batch: ModalityBatch) -> EncoderOutput``.
    Rows whose ``present`` is False may hold any finite values; fusion modules ignore
    them through the presence masks.
    """

    kind: ModalityKind
    out_dim: int
    #: True for encoders that standardise each example by statistics of its group (e.g.
    #: ``audio_ge2e(speaker_norm=True)``): their ``forward(batch, ids)`` needs the example
    #: ids, and :func:`polymodal.inference.calibrate_groups` sets the statistics.
    uses_groups: bool = False

    def forward(self, batch: ModalityBatch) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def weights_fingerprint(model: nn.Module) -> str:
    """A cheap digest of a module's weights (sums and sizes of every tensor): the key under
    which frozen encoders share cached outputs, so weights that differ never share."""
    with torch.no_grad():
        parts = [
            f"{name}:{tuple(t.shape)}:{float(t.double().sum()):.10e}:{float(t.double().abs().sum()):.10e}"
            for name, t in model.state_dict().items()
        ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, L, D) over valid steps ``mask`` (B, L); zeros where none is valid."""
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


ENCODERS: Registry[Encoder] = Registry("encoder")


def build_encoder(name: str, spec: ModalitySpec, **kwargs: Any) -> Encoder:
    """Build a registered encoder by name for ``spec`` (see ``polymodal list encoders``)."""
    return ENCODERS.build(name, spec=spec, **kwargs)


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "build_encoder", "masked_mean"]
