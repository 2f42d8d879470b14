"""Video encoders: a per-frame image encoder, then a temporal model over frames.

A video batch is (B, T, 3, H, W) frames, right-padded, with ``lengths``/``mask`` over T.
Only the valid frames go through the frame encoder (as one (N, 3, H, W) image batch);
their pooled vectors are put back in place, (B, T, D_frame), and a masked temporal
model (bi-GRU or transformer) maps them to (B, T, D).  The frame encoder is any image
encoder of the registry (``image_cnn`` by default, or ``efficientnet_lite0``), built
with the frame shape ``spec.shape`` = (3, H, W).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, masked_mean
from polymodal.encoders.timeseries import (
    SequenceGRU,
    SequenceTransformer,
    check_dim,
    check_spec,
    sequence_mask,
    tensor_values,
)


class VideoEncoder(Encoder):
    """Frame encoder on valid frames + masked temporal backbone, masked-mean pooled.

    Args:
        name: the registered encoder name (for messages).
        frame_encoder: an image :class:`Encoder`; its ``pooled`` output is the frame vector.
        temporal: maps ((B, T, D_frame), (B, T) mask) to (B, T, D).
        out_dim: D.
    """

    kind = ModalityKind.VIDEO

    def __init__(
        self, name: str, frame_encoder: Encoder, temporal: nn.Module, out_dim: int
    ) -> None:
        super().__init__()
        self.name = name
        self.frame_encoder = frame_encoder
        self.temporal = temporal
        self.out_dim = out_dim

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode padded frame sequences.

        Shape:
            batch.values: (B, T, 3, H, W)
            batch.mask: (B, T) bool (or batch.lengths: (B,))
            output.sequence: (B, T, D); output.mask: (B, T); output.pooled: (B, D)
        """
        x = tensor_values(batch, self.name, "(B, T, 3, H, W)", 5, (3, None, None))
        mask = sequence_mask(batch, x, self.name)  # (B, T)
        b, t = mask.shape
        frames = x[mask]  # (N, 3, H, W) valid frames only
        d_frame = self.frame_encoder.out_dim
        feats = torch.zeros(b, t, d_frame, dtype=x.dtype, device=x.device)  # (B, T, D_frame)
        if frames.shape[0] > 0:
            present = torch.ones(frames.shape[0], dtype=torch.bool, device=x.device)
            pooled = self.frame_encoder(ModalityBatch(frames, present)).pooled  # (N, D_frame)
            feats = feats.masked_scatter(mask.unsqueeze(-1), pooled.to(feats.dtype))
        seq = self.temporal(feats, mask)  # (B, T, D)
        return EncoderOutput(seq, mask, masked_mean(seq, mask))


def _frame_encoder(
    spec: ModalitySpec,
    frame_encoder: str,
    frame_dim: int | None,
    frame_kwargs: dict[str, Any] | None,
    encoder: str,
) -> Encoder:
    kinds = ENCODERS.get(frame_encoder).kinds
    if ModalityKind.IMAGE not in kinds:
        images = [e.name for e in ENCODERS if ModalityKind.IMAGE in e.kinds]
        raise ValueError(
            f"{encoder}: frame_encoder must be an image encoder, got {frame_encoder!r} of kind "
            f"{', '.join(repr(k) for k in kinds)}; use one of {images}."
        )
    frame_spec = ModalitySpec(name=f"{spec.name}_frames", kind=ModalityKind.IMAGE, shape=spec.shape)
    kwargs = dict(frame_kwargs or {})
    if kwargs.get("augment") is not None:
        raise ValueError(
            f"{encoder}: frame_kwargs.augment is not supported: the frame encoder would draw "
            "another random transform for every frame of a video, so the frames would jump "
            "about. Remove 'augment' from frame_kwargs."
        )
    if frame_dim is not None:
        kwargs["dim"] = frame_dim
    return ENCODERS.build(frame_encoder, spec=frame_spec, **kwargs)


@ENCODERS.register(
    "video_gru", "per-frame image encoder + bidirectional GRU over frames", kind=ModalityKind.VIDEO
)
def video_gru(
    spec: ModalitySpec,
    dim: int = 128,
    frame_encoder: str = "image_cnn",
    frame_dim: int | None = 64,
    frame_kwargs: dict[str, Any] | None = None,
    hidden_dim: int = 128,
    num_layers: int = 1,
    bidirectional: bool = True,
    dropout: float = 0.0,
) -> Encoder:
    """Frames through ``frame_encoder`` (``frame_dim=None``: its native size), then a bi-GRU.

    ``frame_kwargs`` are passed to the frame encoder's builder (e.g. ``{"freeze": False}``).
    """
    check_spec(spec, "video_gru")
    check_dim(dim, "video_gru")
    frames = _frame_encoder(spec, frame_encoder, frame_dim, frame_kwargs, "video_gru")
    temporal = SequenceGRU(frames.out_dim, dim, hidden_dim, num_layers, bidirectional, dropout)
    return VideoEncoder("video_gru", frames, temporal, dim)


@ENCODERS.register(
    "video_transformer",
    "per-frame image encoder + transformer over frames",
    kind=ModalityKind.VIDEO,
)
def video_transformer(
    spec: ModalitySpec,
    dim: int = 128,
    frame_encoder: str = "image_cnn",
    frame_dim: int | None = 64,
    frame_kwargs: dict[str, Any] | None = None,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_ratio: float = 4.0,
    dropout: float = 0.0,
) -> Encoder:
    """Frames through ``frame_encoder``, then a transformer with a frame padding mask."""
    check_spec(spec, "video_transformer")
    check_dim(dim, "video_transformer")
    frames = _frame_encoder(spec, frame_encoder, frame_dim, frame_kwargs, "video_transformer")
    temporal = SequenceTransformer(frames.out_dim, dim, num_layers, num_heads, mlp_ratio, dropout)
    return VideoEncoder("video_transformer", frames, temporal, dim)
