"""``audio_logmel``: a fixed log-mel vector of a short clip (no weights), for projections
or classifiers trained on cached features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.audio import sample_rate_of
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput
from polymodal.encoders.timeseries import check_dim, check_spec, sequence_mask, tensor_values
from polymodal.layers.melspec import LogMelSpectrogram


@ENCODERS.register(
    "audio_logmel",
    "fixed log-mel vector of a short clip: trimmed, resampled frames + band stats (no weights)",
    kind=ModalityKind.AUDIO,
)
class LogMelVector(Encoder):
    """A fixed-size log-mel vector of a short utterance (a spoken word); no learned weights.

    For each clip: log-mel frames (``n_mels`` bands, 25 ms windows every 10 ms, of its valid
    samples only); the frames whose energy (mean log-mel over bands) lies more than ``trim``
    nats below the clip's loudest frame are trimmed from both ends (leading and trailing
    silence); the rest is linearly resampled to ``frames`` frames and flattened band by band,
    followed by each band's mean and standard deviation over the kept frames.  So
    ``out_dim = n_mels * (frames + 2)`` (1,360 with the defaults).

    With ``dim=None`` (the default) the encoder has no parameters: it counts as frozen, its
    features can be cached (:func:`~polymodal.joint.features.cached_features`), and a
    projection or classifier learns on top.  The vector is not standardised: per-feature
    statistics belong to the training data, so standardise where training happens (e.g. a
    joint projection's ``input_norm: batch``).  ``dim`` adds a trainable linear map to
    ``dim`` (as ``efficientnet_lite0`` does).

    Each clip is processed alone on its own valid samples, so a clip gives the same vector
    alone or padded in any batch; an absent clip, or one with no valid sample, gives zeros.

    Args:
        spec: the audio modality (its ``sample_rate`` sizes the windows).
        n_mels: mel bands.
        frames: frames the trimmed log-mel is resampled to.
        trim: frames more than this many nats below the loudest frame are trimmed from
            both ends (``log`` power: 5 nats is about 22 dB).
        sample_rate: Hz, instead of ``spec.sample_rate``.
        dim: ``None`` for the fixed ``n_mels * (frames + 2)`` vector, or a projection size.
    """

    kind = ModalityKind.AUDIO

    def __init__(
        self,
        spec: ModalitySpec,
        n_mels: int = 40,
        frames: int = 32,
        trim: float = 5.0,
        sample_rate: float | None = None,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        check_spec(spec, "audio_logmel")
        check_dim(n_mels, "audio_logmel", "n_mels")
        check_dim(frames, "audio_logmel", "frames")
        if isinstance(trim, bool) or not isinstance(trim, int | float) or not trim > 0:
            raise ValueError(
                f"audio_logmel: trim must be a positive number of nats (5.0 trims frames "
                f"~22 dB below the loudest), got {trim!r}"
            )
        if dim is not None:
            check_dim(dim, "audio_logmel")
        self.mel = LogMelSpectrogram(sample_rate_of(spec, sample_rate, "audio_logmel"), n_mels)
        self.frames = frames
        self.trim = float(trim)
        self.native_dim = n_mels * (frames + 2)
        self.out_dim = self.native_dim if dim is None else dim
        self.proj = None if dim is None else nn.Linear(self.native_dim, dim)

    def vector(self, frames: Tensor) -> Tensor:
        """The fixed vector of one clip's valid log-mel frames.

        Shape:
            frames: (F, n_mels) with F >= 1
            output: (n_mels * (frames + 2),)
        """
        energy = frames.mean(dim=1)  # (F,)
        loud = (energy > energy.max() - self.trim).nonzero().flatten()
        x = frames[int(loud[0]) : int(loud[-1]) + 1]  # (F', n_mels)
        grid = F.interpolate(x.T[None], size=self.frames, mode="linear", align_corners=True)
        return torch.cat([grid[0].flatten(), x.mean(0), x.std(0, unbiased=False)])

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode padded waveforms into one fixed vector each.

        Shape:
            batch.values: (B, T) waveforms
            batch.lengths: (B,) samples (or batch.mask: (B, T))
            output.pooled: (B, D) with D = n_mels * (frames + 2), or ``dim``
            output.sequence: (B, 1, D); output.mask: (B, 1), False for absent or empty clips
        """
        wave = tensor_values(batch, "audio_logmel", "(B, T) mono waveforms", 2)
        sample_mask = sequence_mask(batch, wave, "audio_logmel")  # (B, T)
        with torch.no_grad():
            spec = self.mel(wave, sample_mask.sum(1))  # (B, F, n_mels), (B, F)
            valid = spec.mask.any(dim=1)  # (B,)
            pooled = wave.new_zeros(wave.shape[0], self.native_dim)  # (B, D)
            for b in valid.nonzero().flatten().tolist():
                pooled[b] = self.vector(spec.features[b][spec.mask[b]])
        if self.proj is not None:
            pooled = self.proj(pooled) * valid[:, None].to(pooled.dtype)  # (B, dim)
        return EncoderOutput(pooled[:, None], valid[:, None], pooled)


__all__ = ["LogMelVector"]
