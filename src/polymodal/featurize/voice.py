"""The voice stage: speech segments, per-10-ms-frame prosody and log-mel, speaker embeddings.

:class:`VoiceAnalyzer` takes a mono waveform at any rate, resamples it to 16 kHz and
returns :class:`VoiceFeatures`:

- **speech segments** from silero-vad (its JIT model from the ``silero-vad`` wheel, loaded
  once per process), in seconds from the first sample;
- on one frame grid, 100 frames per second, frame ``i`` centred on ``i / 100`` s
  (``ceil(N / 160)`` frames for ``N`` samples at 16 kHz): **pitch** and **voicing** from
  YIN (:mod:`polymodal.featurize.pitch`; why not CREPE is said there), **energy** in dB
  relative to full scale over a 25 ms rectangular window, and the **log-mel** spectrogram
  (:class:`~polymodal.layers.melspec.LogMelSpectrogram`, 25 ms Hann window, 10 ms hop);
- one **speaker embedding** per speech segment: the GE2E encoder with Resemblyzer's weights
  (:mod:`polymodal.layers.ge2e`), 256-d, L2-normalised.

Pitch is YIN's own voicing decision and is not masked by the speech segments: a hum or a
tone outside speech keeps its pitch, and a consumer that wants speech only intersects the
two (``frame_times`` against ``segments``).

A silent input gives no segments and an empty (0, 256) speaker tensor, not an error.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polymodal.data.decode import resample_audio
from polymodal.featurize.pitch import centered_frames, num_frames, yin
from polymodal.layers.ge2e import EMBEDDING_DIM, load_speaker_encoder
from polymodal.layers.melspec import LogMelSpectrogram

FRAME_RATE = 100.0  # frames per second (10 ms hop)
SAMPLE_RATE = 16000  # every stage runs at 16 kHz
HOP_LENGTH = round(SAMPLE_RATE / FRAME_RATE)  # 160 samples
WINDOW_LENGTH = 400  # 25 ms: the energy and log-mel window
ENERGY_FLOOR_DB = -100.0

_INSTALL_HINT = 'pip install "polymodal[video]" (it installs silero-vad==6.2.3)'
_VAD_LOCK = threading.Lock()  # the silero model keeps a recurrent state between chunks


@dataclass
class VoiceFeatures:
    """What the voice stage extracts from one waveform.

    Attributes:
        frame_times: (T,) float64 frame centres in seconds (``i / FRAME_RATE``).
        pitch_hz: (T,) float32 fundamental frequency, 0 where YIN finds the frame unvoiced.
        voicing: (T,) float32 in [0, 1], YIN's periodicity (1 - the normalised difference
            at the chosen lag).
        energy_db: (T,) float32 frame energy in dB relative to full scale (a full-scale sine
            is -3 dB; digital silence is -100 dB).
        logmel: (T, n_mels) float32 natural-log mel power.
        segments: speech segments ``(start, end)`` in seconds, in time order.
        speaker: (S, 256) float32, one L2-normalised speaker embedding per segment.
    """

    frame_times: Tensor
    pitch_hz: Tensor
    voicing: Tensor
    energy_db: Tensor
    logmel: Tensor
    segments: list[tuple[float, float]]
    speaker: Tensor

    @property
    def num_frames(self) -> int:
        """T, the number of 10 ms frames."""
        return int(self.frame_times.shape[0])


@functools.lru_cache(maxsize=1)
def load_vad() -> Any:
    """silero-vad's JIT model, loaded once per process (its weights ship in the wheel)."""
    try:
        from silero_vad import load_silero_vad
    except ImportError as e:
        raise ImportError(f"Voice activity detection needs silero-vad: {_INSTALL_HINT}.") from e
    return load_silero_vad()


def speech_segments(
    wave: Tensor,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    speech_pad_ms: int = 30,
) -> list[tuple[int, int]]:
    """Speech segments of a 16 kHz signal as ``(start, end)`` sample indices (silero-vad).

    Args:
        wave: the 16 kHz signal.
        threshold: speech probability above which a 32 ms chunk is speech.
        min_speech_ms: drop shorter segments.
        min_silence_ms: a pause must last this long to end a segment.
        speech_pad_ms: widen each segment by this much on both sides.

    Shape:
        wave: (N,)
    """
    if wave.shape[0] < 512:  # shorter than one silero chunk
        return []
    from silero_vad import get_speech_timestamps

    model = load_vad()
    with _VAD_LOCK, torch.no_grad():
        stamps = get_speech_timestamps(
            wave.float(),
            model,
            threshold=threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=min_speech_ms,
            min_silence_duration_ms=min_silence_ms,
            speech_pad_ms=speech_pad_ms,
        )
    n = wave.shape[0]
    spans = [(max(0, int(s["start"])), min(n, int(s["end"]))) for s in stamps]
    return [(a, b) for a, b in spans if b > a]


def frame_energy_db(wave: Tensor) -> Tensor:
    """Mean-square level per 10 ms frame over a centred 25 ms window, in dBFS.

    Shape:
        wave: (N,) 16 kHz
        output: (ceil(N / 160),) float32, at least ``ENERGY_FLOOR_DB``
    """
    frames = centered_frames(wave.double(), WINDOW_LENGTH, HOP_LENGTH)  # (T, 400)
    power = frames.square().mean(-1)
    floor = 10.0 ** (ENERGY_FLOOR_DB / 10.0)
    return (10.0 * torch.log10(power.clamp_min(floor))).float()


class VoiceAnalyzer:
    """Waveform -> :class:`VoiceFeatures` (see the module docstring).

    Args:
        n_mels: log-mel bands.
        fmin, fmax: YIN's pitch search range in Hz.
        yin_threshold: YIN's absolute threshold (higher finds more frames voiced).
        vad_threshold: silero-vad's speech probability threshold.
        min_speech_ms, min_silence_ms, speech_pad_ms: silero-vad's segment rules (see
            :func:`speech_segments`).
        block_seconds: per-frame features are computed this many seconds at a time, which
            bounds memory on long recordings; the values do not depend on it.

    The silero-vad model and the speaker encoder are loaded on first use and shared by all
    analyzers of the process.
    """

    def __init__(
        self,
        n_mels: int = 40,
        fmin: float = 50.0,
        fmax: float = 500.0,
        yin_threshold: float = 0.2,
        vad_threshold: float = 0.5,
        min_speech_ms: int = 250,
        min_silence_ms: int = 100,
        speech_pad_ms: int = 30,
        block_seconds: float = 60.0,
    ) -> None:
        if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels < 1:
            raise ValueError(f"The 'n_mels' parameter must be a positive int; got {n_mels!r}.")
        if not 0 < fmin < fmax < SAMPLE_RATE / 2:
            raise ValueError(
                f"The 'fmin' and 'fmax' parameters must satisfy 0 < fmin < fmax < "
                f"{SAMPLE_RATE // 2} Hz; got fmin={fmin!r}, fmax={fmax!r}."
            )
        if not 0 < yin_threshold < 1:
            raise ValueError(
                f"The 'yin_threshold' parameter must be in (0, 1); got {yin_threshold!r}."
            )
        if not 0 < vad_threshold < 1:
            raise ValueError(
                f"The 'vad_threshold' parameter must be in (0, 1); got {vad_threshold!r}."
            )
        for name, value in (
            ("min_speech_ms", min_speech_ms),
            ("min_silence_ms", min_silence_ms),
            ("speech_pad_ms", speech_pad_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"The '{name}' parameter must be an int >= 0; got {value!r}.")
        if (
            isinstance(block_seconds, bool)
            or not isinstance(block_seconds, int | float)
            or not math.isfinite(block_seconds)
            or block_seconds < 1.0 / FRAME_RATE
        ):
            raise ValueError(
                f"The 'block_seconds' parameter must be a finite number >= 0.01; got {block_seconds!r}."
            )
        self.n_mels = n_mels
        self.block_frames = max(1, round(block_seconds * FRAME_RATE))
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.yin_threshold = float(yin_threshold)
        self.vad_threshold = float(vad_threshold)
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.speech_pad_ms = speech_pad_ms
        self.melspec = LogMelSpectrogram(SAMPLE_RATE, n_mels, win_ms=25.0, hop_ms=10.0)

    def __call__(self, wave: Tensor, sample_rate: int) -> VoiceFeatures:
        """Features of one mono waveform.

        Args:
            wave: the samples, any floating dtype, nominally in [-1, 1].
            sample_rate: its rate in Hz; resampled to 16 kHz inside.

        Shape:
            wave: (N,)
            output: T = ceil(N * 16000 / sample_rate / 160) frames; S = len(segments)
        """
        wave16 = self.prepare(wave, sample_rate)
        segments = self.segments(wave16)
        frames = self.frames(wave16)
        speaker = self.speakers(wave16, segments)
        return VoiceFeatures(
            segments=[(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in segments],
            speaker=speaker,
            **frames,
        )

    @staticmethod
    def prepare(wave: Tensor, sample_rate: int) -> Tensor:
        """Check a waveform and resample it to 16 kHz float32.

        Shape:
            wave: (N,)
            output: (ceil(N * 16000 / sample_rate),)
        """
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float):
            raise TypeError(
                f"The 'sample_rate' parameter must be an int (Hz); got {sample_rate!r}."
            )
        if not (math.isfinite(sample_rate) and sample_rate > 0 and float(sample_rate).is_integer()):
            raise ValueError(
                f"The 'sample_rate' parameter must be a positive whole number of Hz; "
                f"got {sample_rate!r}."
            )
        if not isinstance(wave, Tensor):
            raise TypeError(
                f"The 'wave' parameter must be a torch.Tensor; got {type(wave).__name__}. "
                "Fix: torch.from_numpy(array)."
            )
        if wave.dim() != 1:
            raise ValueError(
                f"The 'wave' parameter must be a mono (N,) waveform; got shape "
                f"{tuple(wave.shape)}. Fix: mix channels down with wave.mean(0)."
            )
        if not wave.is_floating_point():
            raise TypeError(
                f"The 'wave' parameter must be a floating tensor; got {wave.dtype}. "
                "Fix: convert 16-bit PCM with wave.float() / 32768."
            )
        if not bool(torch.isfinite(wave).all()):
            bad = int((~torch.isfinite(wave)).sum())
            raise ValueError(
                f"The 'wave' parameter holds {bad} NaN/inf samples of {wave.shape[0]}; "
                "fix or drop the audio before featurizing it."
            )
        wave = wave.detach().cpu().float()
        return resample_audio(wave, int(sample_rate), SAMPLE_RATE).contiguous()

    def segments(self, wave16: Tensor) -> list[tuple[int, int]]:
        """Speech segments of a 16 kHz waveform, in samples (see :func:`speech_segments`)."""
        return speech_segments(
            wave16,
            self.vad_threshold,
            self.min_speech_ms,
            self.min_silence_ms,
            self.speech_pad_ms,
        )

    def frames(self, wave16: Tensor) -> dict[str, Tensor]:
        """Per-frame features of a 16 kHz waveform: the frame-grid fields of VoiceFeatures.

        Shape:
            wave16: (N,)
            output: frame_times, pitch_hz, voicing, energy_db (T,); logmel (T, n_mels)
        """
        n = wave16.shape[0]
        t = num_frames(n, HOP_LENGTH)
        # Blocks of frames bound the memory of long recordings (YIN's frames alone are
        # ~50 kB per second).  Each block reads ``margin`` extra samples on both sides, more
        # than any frame's window reaches, so blocking changes no value.
        reach = 2 * math.ceil(SAMPLE_RATE / self.fmin) + self.melspec.n_fft
        margin = HOP_LENGTH * math.ceil(reach / HOP_LENGTH)
        parts: list[tuple[Tensor, ...]] = []
        for first in range(0, t, self.block_frames):
            last = min(t, first + self.block_frames)
            start = max(0, first * HOP_LENGTH - margin)
            piece = wave16[start : min(n, last * HOP_LENGTH + margin)]
            keep = slice((first * HOP_LENGTH - start) // HOP_LENGTH, None)
            pitch = yin(piece, SAMPLE_RATE, HOP_LENGTH, self.fmin, self.fmax, self.yin_threshold)
            with torch.no_grad():
                logmel = self.melspec(piece[None]).features[0]  # (T_piece + 1, n_mels)
            block = (pitch.f0_hz, pitch.voicing, frame_energy_db(piece), logmel)
            parts.append(tuple(x[keep][: last - first] for x in block))
        if parts:
            f0, voicing, energy, logmel = (torch.cat(x) for x in zip(*parts, strict=True))
        else:
            f0, voicing, energy = torch.zeros(0), torch.zeros(0), torch.zeros(0)
            logmel = torch.zeros(0, self.n_mels)
        return {
            "frame_times": torch.arange(t, dtype=torch.float64) / FRAME_RATE,
            "pitch_hz": f0,
            "voicing": voicing,
            "energy_db": energy,
            "logmel": logmel.contiguous(),
        }

    @staticmethod
    def speakers(wave16: Tensor, segments: list[tuple[int, int]]) -> Tensor:
        """One speaker embedding per segment (samples of a 16 kHz waveform).

        Shape:
            wave16: (N,)
            output: (len(segments), 256) float32
        """
        if not segments:
            return torch.zeros(0, EMBEDDING_DIM)
        return load_speaker_encoder().embed_segments(wave16, segments)
