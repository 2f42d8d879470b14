"""The encoder interface: one modality's :class:`ModalityBatch` in, :class:`EncoderOutput` out.

Every encoder is registered in :data:`ENCODERS` under a name, with the modality kinds it
accepts (``kind=``), either as its class (whose ``__init__(self, spec, dim=..., ...)`` is
the builder, so each default is written once) or, where building assembles parts (a
log-mel front end and a backbone, a frame encoder and a temporal model), as a builder
function ``builder(spec, dim=..., ...)``.  Either way the first parameter is the
modality's :class:`~polymodal.data.modality.ModalitySpec`.
"""

from __future__ import annotations

from typing import Any

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

    def forward(self, batch: ModalityBatch) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, L, D) over valid steps ``mask`` (B, L); zeros where none is valid."""
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


ENCODERS: Registry[Encoder] = Registry("encoder")


def build_encoder(name: str, spec: ModalitySpec, **kwargs: Any) -> Encoder:
    """Build a registered encoder by name for ``spec`` (see ``polymodal list encoders``)."""
    return ENCODERS.build(name, spec=spec, **kwargs)


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "build_encoder", "masked_mean"]
