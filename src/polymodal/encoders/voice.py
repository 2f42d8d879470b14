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

With ``speaker_norm=True`` the frozen states are standardised per speaker: each
dimension minus the mean and over the standard deviation of that speaker's frames (all of
their clips), which removes what the voice is from how it is used.  Measured the same
way, it lifts layer 1 from 0.69 to 0.79.  The statistics come from the data, not from
training: :func:`polymodal.inference.calibrate_groups` reads every clip of each group
(the data set's ``groups()``: RAVDESS's actor, a manifest's ``group`` column) once, without
labels, and the trainer, ``evaluate`` and ``predict`` call it.  So at prediction time the
model needs several clips of each speaker (with one clip, its own frames are the
statistics); the test speakers' unlabelled clips are read, their labels never.

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

from polymodal.data.cache import FeatureCache, content_key
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import (
    ENCODERS,
    Encoder,
    EncoderOutput,
    GroupStats,
    masked_mean,
    weights_fingerprint,
)
from polymodal.encoders.timeseries import check_dim, check_spec, sequence_mask, tensor_values
from polymodal.layers.dropout import Dropout
from polymodal.layers.ge2e import (
    SAMPLE_RATE,
    SpeakerEncoder,
    normalize_volume,
    speaker_mel,
)

GE2E_LAYERS = 3
GE2E_HIDDEN = 256

# Frozen frame states of each clip, shared by every audio_ge2e in the process, keyed by the
# weights' fingerprint, the layers read, the sample rate and a digest of the clip's samples;
# least recently used clips are dropped past the storing encoder's ``cache_mb``.
_STATE_CACHE = FeatureCache(0)


def clear_state_cache() -> None:
    """Forget every cached clip's states."""
    _STATE_CACHE.clear()


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
        speaker_norm: standardise the frozen states by each group's (speaker's) own mean
            and standard deviation; ``forward`` then needs the examples' ids, and the
            groups' statistics from :func:`polymodal.inference.calibrate_groups`.
        cache_mb: keep each clip's frozen states in an in-memory LRU cache of this many MiB
            (keyed by the clip's samples, so a perturbed clip is a new entry), shared by
            every ``audio_ge2e`` of the process: after the first epoch only the adapter
            runs. 0 turns it off.
    """

    kind = ModalityKind.AUDIO

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int | None = 128,
        lstm_layers: Sequence[int] = (1,),
        dropout: float = 0.1,
        sample_rate: float | None = None,
        speaker_norm: bool = False,
        cache_mb: float = 1024.0,
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
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, int | float) or cache_mb < 0:
            raise ValueError(
                f"The 'cache_mb' parameter of audio_ge2e must be a number >= 0 (MiB; 0: no "
                f"cache); got {cache_mb!r}."
            )
        self.cache_bytes = int(cache_mb * 2**20)
        self._fingerprint: str | None = None
        self.sample_rate = int(rate)
        self.uses_groups = bool(speaker_norm)
        self.layers = tuple(chosen)
        self.ge2e = SpeakerEncoder.pretrained()
        self.ge2e.requires_grad_(False)
        self.native_dim = GE2E_HIDDEN * len(chosen)
        self.groups = GroupStats("audio_ge2e(speaker_norm=true)", self.native_dim)
        self.out_dim = self.native_dim if dim is None else dim
        self.adapter = (
            None
            if dim is None
            else nn.Sequential(
                nn.LayerNorm(self.native_dim),
                nn.Linear(self.native_dim, dim),
                nn.GELU(),
                Dropout(dropout),
            )
        )

    def train(self, mode: bool = True) -> GE2EFrames:
        super().train(mode)
        self.ge2e.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def states(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen frame states of each clip's valid samples (from the cache where held).

        Shape:
            wave: (B, T) at ``sample_rate``; lengths: (B,) valid samples
            output: states (B, F, native_dim), mask (B, F) with F = max(n // 160 + 1) over
            the clips' 16 kHz lengths n
        """
        clips = [row[: int(n)].float() for row, n in zip(wave, lengths.tolist(), strict=True)]
        keys = [self._key(c) for c in clips] if self.cache_bytes > 0 else [None] * len(clips)
        found: dict[int, Tensor] = {}
        for i, key in enumerate(keys):
            hit = None if key is None else _STATE_CACHE.get(key)
            if hit is not None:
                found[i] = hit
        todo = [i for i in range(len(clips)) if i not in found]
        if todo:
            mels = [self._mel(clips[i]) for i in todo]  # (F_i, 40) each
            padded = nn.utils.rnn.pad_sequence(mels, batch_first=True)  # (b, F, 40)
            fresh = self.ge2e.frame_states(padded, self.layers)  # (b, F, native_dim)
            for j, i in enumerate(todo):
                found[i] = fresh[j, : mels[j].shape[0]]  # a clip's states ignore the padding
                key = keys[i]
                if key is not None:
                    self._remember(key, found[i])
        per = [found[i] for i in range(len(clips))]
        frames = torch.tensor([p.shape[0] for p in per], device=wave.device)
        states = nn.utils.rnn.pad_sequence([p.to(wave.device) for p in per], batch_first=True)
        mask = torch.arange(states.shape[1], device=wave.device)[None, :] < frames[:, None]
        return states, mask

    def _mel(self, clip: Tensor) -> Tensor:
        if self.sample_rate != SAMPLE_RATE:
            from polymodal.data.decode import resample_audio

            clip = resample_audio(clip, self.sample_rate, SAMPLE_RATE)
        return speaker_mel(normalize_volume(clip))

    def _key(self, clip: Tensor) -> str:
        if self._fingerprint is None:  # reset when weights are loaded
            self._fingerprint = weights_fingerprint(self.ge2e)
        return f"{self._fingerprint}|{self.layers}|{self.sample_rate}|{content_key(clip)}"

    def _remember(self, key: str, states: Tensor) -> None:
        _STATE_CACHE.max_bytes = self.cache_bytes
        _STATE_CACHE.put(key, states.detach().cpu())

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        self._fingerprint = None  # cached states belong to the old weights
        super()._load_from_state_dict(*args, **kwargs)  # type: ignore[arg-type]

    def _batch_states(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        wave = tensor_values(batch, "audio_ge2e", "(B, T) mono waveforms", 2)
        sample_mask = sequence_mask(batch, wave, "audio_ge2e")  # (B, T)
        return self.states(wave, sample_mask.sum(1))

    @torch.no_grad()
    def moments(self, batch: ModalityBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Per example, the frozen states' valid frame count, sum and sum of squares
        (float64; zeros where the example lacks the modality): what
        :func:`polymodal.inference.calibrate_groups` adds up per group.

        Shape:
            output: n (B,), sum (B, native_dim), sum of squares (B, native_dim)
        """
        states, mask = self._batch_states(batch)
        m = (mask & batch.present.to(mask.device, torch.bool)[:, None]).to(torch.float64)
        x = states.to(torch.float64) * m.unsqueeze(-1)  # (B, F, D)
        return m.sum(1), x.sum(1), (x * states.to(torch.float64)).sum(1)

    def set_group_stats(
        self, group_of: dict[str, str], stats: dict[str, tuple[Tensor, Tensor]]
    ) -> None:
        """Add example ids' groups and groups' (mean, std) of the frozen states, each
        (native_dim,); later calls overwrite the ids and groups they name."""
        self.groups.update(group_of, stats)

    def known_ids(self) -> set[str]:
        """The example ids whose group statistics are set."""
        return self.groups.known_ids()

    def forward(self, batch: ModalityBatch, ids: Sequence[str] | None = None) -> EncoderOutput:
        """Encode padded waveforms into per-frame (10 ms) features.

        Args:
            batch: the audio modality of a batch.
            ids: the B example ids (needed with ``speaker_norm``; ignored otherwise).

        Shape:
            batch.values: (B, T) waveforms; batch.lengths: (B,) (or batch.mask: (B, T))
            output.sequence: (B, F, D), F = frames of the longest clip at 16 kHz
            (``n // 160 + 1``); output.mask: (B, F); output.pooled: (B, D)
        """
        seq, mask = self._batch_states(batch)
        if self.uses_groups:
            seq = self.groups.normalize(seq, ids)
        if self.adapter is not None:
            seq = self.adapter(seq)  # (B, F, D)
        seq = seq * mask.unsqueeze(-1).to(seq.dtype)
        return EncoderOutput(seq, mask, masked_mean(seq, mask))


__all__ = ["GE2E_LAYERS", "GE2EFrames"]
