"""``audio_ge2e``: the frame states of a pretrained speaker encoder, frozen, with an adapter.

Emotion in a voice is carried by pitch, energy, rate and timbre, and the speaker encoder
of GE2E (Wan et al. 2018; Resemblyzer's weights, trained to tell thousands of speakers
apart on LibriSpeech and VoxCeleb) has learned to describe timbre and prosody from 40
mel bands.  Its *final* embedding is built to be the same for every utterance of a
speaker, so it throws away what changes between them; its lower LSTM layers keep it.
This encoder reads those per-frame states (10 ms frames) and leaves the network frozen.

Measured on RAVDESS speech (20 training actors, 5-fold cross-validation by actor, a
logistic regression on the mean and std of each clip's states): layer 0 0.54, layer 1
0.69, layer 2 (the last) 0.61, the final embedding 0.55, log-mel statistics 0.41.  So
``lstm_layers=(1,)`` is the default.

Each clip is processed on its own valid samples: raised to -30 dBFS when quieter (as
Resemblyzer does), turned into GE2E's mel power frames, run through the frozen LSTM. A
trainable adapter (``dim``: per frame a LayerNorm, a linear map, GELU and dropout) follows, and the
pooled output is the masked mean over frames of the adapter's output, so a classifier
sees non-linear statistics of the states, not only their mean.  Needs
``pip install "polymodal[video]"`` (Resemblyzer's weight file).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, masked_mean
from polymodal.encoders.timeseries import check_dim, check_spec, sequence_mask, tensor_values
from polymodal.layers.ge2e import (
    SAMPLE_RATE,
    SpeakerEncoder,
    normalize_volume,
    speaker_mel,
)

GE2E_LAYERS = 3
GE2E_HIDDEN = 256


@ENCODERS.register(
    "audio_ge2e",
    "pretrained GE2E speaker-encoder LSTM (Resemblyzer), frozen frame states + adapter",
    kind=ModalityKind.AUDIO,
)
class GE2EFrames(Encoder):
    """Frozen GE2E LSTM states per 10 ms frame, then a trainable per-frame adapter.

    Args:
        spec: the audio modality; clips at another rate than 16 kHz are resampled.
        dim: the adapter's output size (LayerNorm, linear, GELU, dropout per frame), or
            ``None`` for the raw states (256 per layer; the
            encoder then has no trainable parameter).
        lstm_layers: which LSTM layers' states to read (0, 1, 2; concatenated in order).
        dropout: after the adapter's GELU.
        sample_rate: Hz, instead of ``spec.sample_rate``.
    """

    kind = ModalityKind.AUDIO

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int | None = 128,
        lstm_layers: Sequence[int] = (1,),
        dropout: float = 0.1,
        sample_rate: float | None = None,
    ) -> None:
        super().__init__()
        check_spec(spec, "audio_ge2e")
        if dim is not None:
            check_dim(dim, "audio_ge2e")
        chosen = (
            sorted({int(i) for i in lstm_layers}) if not isinstance(lstm_layers, str | int) else []
        )
        if (
            not chosen
            or chosen[0] < 0
            or chosen[-1] >= GE2E_LAYERS
            or len(chosen) != len(lstm_layers)
        ):
            raise ValueError(
                f"The 'lstm_layers' parameter of audio_ge2e must list distinct LSTM layers among "
                f"0, 1, 2 (e.g. [1]); got {lstm_layers!r}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"The 'dropout' parameter of audio_ge2e must lie in [0, 1); got {dropout!r}."
            )
        rate = spec.sample_rate if sample_rate is None else sample_rate
        if rate is None or rate <= 0 or float(rate) != int(rate):
            raise ValueError(
                f"audio_ge2e needs the audio's sample rate in whole Hz (spec.sample_rate or "
                f"sample_rate=); got {rate!r}."
            )
        self.sample_rate = int(rate)
        self.layers = tuple(chosen)
        self.ge2e = SpeakerEncoder.pretrained()
        self.ge2e.requires_grad_(False)
        self.native_dim = GE2E_HIDDEN * len(chosen)
        self.out_dim = self.native_dim if dim is None else dim
        self.adapter = (
            None
            if dim is None
            else nn.Sequential(
                nn.LayerNorm(self.native_dim),
                nn.Linear(self.native_dim, dim),
                nn.GELU(),
                nn.Dropout(dropout),
            )
        )

    def train(self, mode: bool = True) -> GE2EFrames:
        super().train(mode)
        self.ge2e.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def states(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen frame states of each clip's valid samples.

        Shape:
            wave: (B, T) at ``sample_rate``; lengths: (B,) valid samples
            output: states (B, F, native_dim), mask (B, F) with F = max(n // 160 + 1) over
            the clips' 16 kHz lengths n
        """
        mels: list[Tensor] = []
        for row, n in zip(wave, lengths.tolist(), strict=True):
            clip = row[: int(n)].float()
            if self.sample_rate != SAMPLE_RATE:
                from polymodal.data.decode import resample_audio

                clip = resample_audio(clip, self.sample_rate, SAMPLE_RATE)
            mels.append(speaker_mel(normalize_volume(clip)))  # (F_i, 40)
        frames = torch.tensor([m.shape[0] for m in mels], device=wave.device)
        padded = nn.utils.rnn.pad_sequence(mels, batch_first=True)  # (B, F, 40)
        mask = torch.arange(padded.shape[1], device=wave.device)[None, :] < frames[:, None]
        return self.ge2e.frame_states(padded, self.layers), mask

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode padded waveforms into per-frame (10 ms) features.

        Shape:
            batch.values: (B, T) waveforms; batch.lengths: (B,) (or batch.mask: (B, T))
            output.sequence: (B, F, D), F = frames of the longest clip at 16 kHz
            (``n // 160 + 1``); output.mask: (B, F); output.pooled: (B, D)
        """
        wave = tensor_values(batch, "audio_ge2e", "(B, T) mono waveforms", 2)
        sample_mask = sequence_mask(batch, wave, "audio_ge2e")  # (B, T)
        seq, mask = self.states(wave, sample_mask.sum(1))
        if self.adapter is not None:
            seq = self.adapter(seq)  # (B, F, D)
        seq = seq * mask.unsqueeze(-1).to(seq.dtype)
        return EncoderOutput(seq, mask, masked_mean(seq, mask))


__all__ = ["GE2E_LAYERS", "GE2EFrames"]
