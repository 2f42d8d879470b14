"""The encoder interface: one modality's :class:`ModalityBatch` in, :class:`EncoderOutput` out."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch
from polymodal.registry import Registry


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


def build_encoder(name: str, **kwargs: object) -> Encoder:
    """Build a registered encoder by name (see ``polymodal list encoders``)."""
    return ENCODERS.build(name, **kwargs)


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "build_encoder", "masked_mean"]
