"""Audio encoders: a log-mel front end (computed in torch) and a masked sequence model.

The batch holds padded mono waveforms (B, T) with ``lengths``/``mask`` in samples.
:class:`~polymodal.layers.melspec.LogMelSpectrogram` turns them into log-mel frames
(B, F, n_mels) with a frame mask (B, F) (25 ms Hann windows every 10 ms by default,
derived from ``spec.sample_rate``); each utterance's frames are then standardised per
mel band over its valid frames (CMVN, :func:`masked_standardize`), and a sequence model
maps them to (B, F, D).  Outputs are one vector per frame; pooling is a masked mean.

* ``audio_cnn``: 2-D convolutions over (mel, time) that stride only along frequency,
  then a mean over frequency: a sequence over time.
* ``audio_gru``: a bidirectional GRU over packed mel frames.
* ``audio_transformer``: a transformer over mel frames with a key padding mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, masked_mean
from polymodal.encoders.timeseries import (
    ChannelLayerNorm,
    SequenceGRU,
    SequenceTransformer,
    check_dim,
    check_spec,
    sequence_mask,
    tensor_values,
    zero_invalid,
)
from polymodal.layers.melspec import LogMelSpectrogram, masked_standardize


def _sample_rate(spec: ModalitySpec, sample_rate: float | None, encoder: str) -> float:
    sr = spec.sample_rate if sample_rate is None else sample_rate
    if sr is None or sr <= 0:
        raise ValueError(
            f"{encoder} needs the audio sample rate to size its 25 ms windows: spec "
            f"{spec.name!r} has sample_rate={spec.sample_rate!r}. Set ModalitySpec.sample_rate "
            "(Hz) or pass sample_rate=..."
        )
    return float(sr)


class MelConv2d(nn.Module):
    """2-D conv blocks over (mel, time) striding 2 along mel only, then a mean over mel.

    Each block is conv3x3 -> channel LayerNorm -> GELU; invalid frames are zeroed before
    every convolution, so an utterance's valid frames never see padding.

    Args:
        n_mels: mel bands of the input.
        out_dim: output features D.
        channels: output channels of each block.
        dropout: dropout after each block.
    """

    def __init__(
        self,
        n_mels: int,
        out_dim: int,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("audio_cnn channels must list at least one block width, got ()")
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.convs.append(nn.Conv2d(c_in, c, 3, stride=(2, 1), padding=1))
            self.norms.append(ChannelLayerNorm(c))
            c_in = c
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(c_in, out_dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Shape:
        x: (B, F, n_mels) frames
        mask: (B, F) bool
        output: (B, F, D), zeros at invalid frames
        """
        m = mask.to(x.dtype)[:, None, None, :]  # (B, 1, 1, F)
        h = x.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, F)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = self.drop(F.gelu(norm(conv(h * m))))  # (B, c, n_mels', F)
        h = (h * m).mean(2).transpose(1, 2)  # (B, F, c)
        return zero_invalid(self.proj(h), mask)  # (B, F, D)


class AudioEncoder(Encoder):
    """Log-mel front end + per-utterance CMVN + a masked sequence backbone.

    Args:
        name: the registered encoder name (for messages).
        melspec: the front end.
        backbone: maps ((B, F, n_mels), (B, F) mask) to (B, F, D).
        out_dim: D.
        cmvn: standardise each utterance's mel bands over its valid frames.
    """

    kind = ModalityKind.AUDIO

    def __init__(
        self,
        name: str,
        melspec: LogMelSpectrogram,
        backbone: nn.Module,
        out_dim: int,
        cmvn: bool = True,
    ) -> None:
        super().__init__()
        self.name = name
        self.melspec = melspec
        self.backbone = backbone
        self.out_dim = out_dim
        self.cmvn = cmvn

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode padded waveforms; outputs are per mel frame.

        Shape:
            batch.values: (B, T) waveforms
            batch.lengths: (B,) samples (or batch.mask: (B, T))
            output.sequence: (B, F, D) with F = T // hop + 1; output.mask: (B, F);
            output.pooled: (B, D)
        """
        wave = tensor_values(batch, self.name, "(B, T) mono waveforms", 2)
        sample_mask = sequence_mask(batch, wave, self.name)  # (B, T)
        spec = self.melspec(wave, sample_mask.sum(1))
        feats, mask = spec.features, spec.mask  # (B, F, n_mels), (B, F)
        if self.cmvn:
            feats = masked_standardize(feats, mask)
        seq = self.backbone(feats, mask)  # (B, F, D)
        return EncoderOutput(seq, mask, masked_mean(seq, mask))


def _melspec(
    spec: ModalitySpec,
    sample_rate: float | None,
    n_mels: int,
    win_ms: float,
    hop_ms: float,
    encoder: str,
) -> LogMelSpectrogram:
    sr = _sample_rate(spec, sample_rate, encoder)
    return LogMelSpectrogram(sr, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms)


@ENCODERS.register("audio_cnn", "log-mel + 2-D CNN over (mel, time), a sequence over frames")
def audio_cnn(
    spec: ModalitySpec,
    dim: int = 128,
    channels: Sequence[int] = (32, 64, 128),
    n_mels: int = 64,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    dropout: float = 0.0,
    cmvn: bool = True,
    sample_rate: float | None = None,
) -> Encoder:
    """Convolutions stride along mel only, so time keeps the 10 ms frame rate."""
    check_spec(spec, "audio_cnn", (ModalityKind.AUDIO,))
    check_dim(dim, "audio_cnn")
    mel = _melspec(spec, sample_rate, n_mels, win_ms, hop_ms, "audio_cnn")
    return AudioEncoder("audio_cnn", mel, MelConv2d(n_mels, dim, channels, dropout), dim, cmvn)


@ENCODERS.register("audio_gru", "log-mel + bidirectional GRU over packed frames")
def audio_gru(
    spec: ModalitySpec,
    dim: int = 128,
    hidden: int = 128,
    layers: int = 2,
    bidirectional: bool = True,
    n_mels: int = 64,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    dropout: float = 0.0,
    cmvn: bool = True,
    sample_rate: float | None = None,
) -> Encoder:
    """A (bi)GRU over standardised log-mel frames, projected to ``dim``."""
    check_spec(spec, "audio_gru", (ModalityKind.AUDIO,))
    check_dim(dim, "audio_gru")
    mel = _melspec(spec, sample_rate, n_mels, win_ms, hop_ms, "audio_gru")
    backbone = SequenceGRU(n_mels, dim, hidden, layers, bidirectional, dropout)
    return AudioEncoder("audio_gru", mel, backbone, dim, cmvn)


@ENCODERS.register("audio_transformer", "log-mel + transformer encoder over frames")
def audio_transformer(
    spec: ModalitySpec,
    dim: int = 128,
    layers: int = 2,
    heads: int = 4,
    mlp_ratio: float = 4.0,
    n_mels: int = 64,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    dropout: float = 0.0,
    cmvn: bool = True,
    sample_rate: float | None = None,
) -> Encoder:
    """Linear frame embedding, sinusoidal positions and a pre-norm transformer."""
    check_spec(spec, "audio_transformer", (ModalityKind.AUDIO,))
    check_dim(dim, "audio_transformer")
    mel = _melspec(spec, sample_rate, n_mels, win_ms, hop_ms, "audio_transformer")
    backbone = SequenceTransformer(n_mels, dim, layers, heads, mlp_ratio, dropout)
    return AudioEncoder("audio_transformer", mel, backbone, dim, cmvn)
