"""Log-mel spectrograms computed in torch (no torchaudio), batched and length-aware.

:class:`LogMelSpectrogram` turns padded waveforms (B, T) with per-example lengths into
log-mel frames (B, F, n_mels) and a frame mask (B, F).  Frame ``i`` is centred on sample
``i * hop`` (``torch.stft(center=True)`` with zero padding) and is valid when its centre
lies inside the example, so an example has ``ceil(length / hop)`` frames.  Samples past
an example's length are zeroed before the STFT: a frame's value never depends on what
the batch pads with, and an example gives the same frames alone or padded in a batch.

The mel filterbank follows torchaudio's ``melscale_fbanks`` (triangles between
``n_mels + 2`` points equally spaced on the mel scale), HTK or Slaney mel scale, with
optional Slaney area normalisation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

MEL_SCALES = ("htk", "slaney")

_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = math.log(6.4) / 27.0


def _check_scale(mel_scale: str) -> None:
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"mel_scale must be one of {list(MEL_SCALES)}, got {mel_scale!r}")


def hz_to_mel(freq: Tensor, mel_scale: str = "htk") -> Tensor:
    """Frequencies in Hz to mels (HTK: ``2595 log10(1 + f/700)``; Slaney: linear < 1 kHz)."""
    _check_scale(mel_scale)
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    linear = freq / _SLANEY_F_SP
    log = (
        _SLANEY_MIN_LOG_MEL
        + torch.log(freq.clamp_min(1e-10) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    )
    return torch.where(freq >= _SLANEY_MIN_LOG_HZ, log, linear)


def mel_to_hz(mels: Tensor, mel_scale: str = "htk") -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    _check_scale(mel_scale)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear = _SLANEY_F_SP * mels
    log = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mels - _SLANEY_MIN_LOG_MEL))
    return torch.where(mels >= _SLANEY_MIN_LOG_MEL, log, linear)


def mel_points(n_mels: int, f_min: float, f_max: float, mel_scale: str = "htk") -> Tensor:
    """The ``n_mels + 2`` filter edge/centre frequencies (Hz), float64; filter k peaks at [k+1]."""
    lo = hz_to_mel(torch.tensor(f_min, dtype=torch.float64), mel_scale)
    hi = hz_to_mel(torch.tensor(f_max, dtype=torch.float64), mel_scale)
    return mel_to_hz(
        torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64), mel_scale
    )


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: float,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "htk",
    norm: str | None = None,
) -> Tensor:
    """Triangular mel filters over the ``n_freqs`` STFT bins from 0 to ``sample_rate / 2``.

    Args:
        n_freqs: STFT frequency bins (``n_fft // 2 + 1``).
        n_mels: number of filters.
        sample_rate: Hz.
        f_min, f_max: frequency range covered (``f_max`` default ``sample_rate / 2``).
        mel_scale: ``"htk"`` or ``"slaney"``.
        norm: ``None`` (peak 1) or ``"slaney"`` (each filter has unit area in Hz).

    Shape:
        output: (n_freqs, n_mels), float32
    """
    f_max = sample_rate / 2.0 if f_max is None else f_max
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(
            f"mel filterbank needs 0 <= f_min < f_max <= sample_rate/2 = {sample_rate / 2}, "
            f"got f_min={f_min}, f_max={f_max}"
        )
    if norm not in (None, "slaney"):
        raise ValueError(f"mel filterbank norm must be None or 'slaney', got {norm!r}")
    all_freqs = torch.linspace(0.0, sample_rate / 2.0, n_freqs, dtype=torch.float64)  # (n_freqs,)
    f_pts = mel_points(n_mels, f_min, f_max, mel_scale)  # (n_mels + 2,)
    f_diff = f_pts[1:] - f_pts[:-1]  # (n_mels + 1,)
    slopes = f_pts[None, :] - all_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]  # (n_freqs, n_mels)
    up = slopes[:, 2:] / f_diff[1:]  # (n_freqs, n_mels)
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2:] - f_pts[:-2]))[None, :]
    return fb.to(torch.float32)


class Spectrogram(NamedTuple):
    """Frames of a batch of signals.

    Attributes:
        features: (B, F, n_mels) log-mel frames; zeros at invalid frames.
        mask: (B, F) bool, True at valid frames.
    """

    features: Tensor
    mask: Tensor


class LogMelSpectrogram(nn.Module):
    """Log-mel spectrogram of padded mono waveforms, respecting lengths.

    Args:
        sample_rate: Hz of the input.
        n_mels: mel bands.
        win_ms: analysis window (Hann) length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        n_fft: FFT size; ``None`` means the next power of two >= the window length.
        f_min, f_max: frequency range of the filterbank (``f_max`` default Nyquist).
        mel_scale: ``"htk"`` or ``"slaney"``.
        norm: ``None`` or ``"slaney"`` filter normalisation.
        log_floor: power floor before the log (``log(max(mel, log_floor))``).
        top_db: a floor relative to each example: log-mel values more than ``top_db``
            decibels below the example's loudest valid value are raised to that level
            (librosa's ``power_to_db(top_db=...)``); ``None``: only ``log_floor``.  Near-silent
            frames (digital silence, a codec's noise floor) then sit at one level instead
            of spreading over many decibels that say nothing about the speech.

    The layer has no parameters; its window and filterbank are non-persistent buffers
    rebuilt from these arguments.
    """

    window: Tensor
    filterbank: Tensor

    def __init__(
        self,
        sample_rate: float,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "htk",
        norm: str | None = None,
        log_floor: float = 1e-6,
        top_db: float | None = None,
    ) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"LogMelSpectrogram sample_rate must be > 0 Hz, got {sample_rate}")
        if n_mels < 1:
            raise ValueError(f"LogMelSpectrogram n_mels must be >= 1, got {n_mels}")
        if log_floor <= 0:
            raise ValueError(f"LogMelSpectrogram log_floor must be > 0, got {log_floor}")
        if top_db is not None and not (
            isinstance(top_db, int | float) and not isinstance(top_db, bool) and top_db > 0
        ):
            raise ValueError(
                f"The 'top_db' parameter of LogMelSpectrogram must be a number of decibels "
                f"> 0 (80 is usual) or None; got {top_db!r}."
            )
        _check_scale(mel_scale)
        self.top_db = None if top_db is None else float(top_db)
        self.sample_rate = float(sample_rate)
        self.win_length = max(2, round(sample_rate * win_ms / 1000.0))
        self.hop_length = max(1, round(sample_rate * hop_ms / 1000.0))
        self.n_fft = 1 << (self.win_length - 1).bit_length() if n_fft is None else int(n_fft)
        if self.n_fft < self.win_length:
            raise ValueError(
                f"LogMelSpectrogram n_fft={self.n_fft} is shorter than the window "
                f"({self.win_length} samples = {win_ms} ms); raise n_fft or leave it None."
            )
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = sample_rate / 2.0 if f_max is None else f_max
        self.mel_scale = mel_scale
        self.log_floor = log_floor
        self.register_buffer(
            "window", torch.hann_window(self.win_length, periodic=True), persistent=False
        )
        fb = mel_filterbank(
            self.n_fft // 2 + 1, n_mels, sample_rate, f_min, self.f_max, mel_scale, norm
        )
        self.register_buffer("filterbank", fb, persistent=False)  # (n_freqs, n_mels)

    @property
    def center_frequencies(self) -> Tensor:
        """(n_mels,) the frequency (Hz) at which each mel filter peaks."""
        return mel_points(self.n_mels, self.f_min, self.f_max, self.mel_scale)[1:-1].float()

    def num_frames(self, lengths: Tensor) -> Tensor:
        """Valid frames for waveforms of ``lengths`` samples: ``ceil(length / hop)``."""
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor")

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Spectrogram:
        """Log-mel frames of each waveform's first ``lengths[b]`` samples.

        Args:
            waveform: padded mono signals.
            lengths: valid samples per example; default all ``T``.

        Shape:
            waveform: (B, T)
            lengths: (B,) long
            output.features: (B, F, n_mels) with F = T // hop + 1
            output.mask: (B, F) bool
        """
        if waveform.dim() != 2:
            raise ValueError(
                f"LogMelSpectrogram expects (B, T) waveforms, got shape {tuple(waveform.shape)}"
            )
        b, t = waveform.shape
        x = waveform.float()
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device).long().clamp(0, t)
        valid_samples = torch.arange(t, device=x.device)[None, :] < lengths[:, None]  # (B, T)
        x = x * valid_samples.to(x.dtype)
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (B, n_freqs, F)
        power = spec.real.square() + spec.imag.square()  # (B, n_freqs, F)
        mel = torch.matmul(power.transpose(1, 2), self.filterbank)  # (B, F, n_mels)
        logmel = torch.log(mel.clamp_min(self.log_floor))  # (B, F, n_mels)
        n = logmel.shape[1]
        mask = torch.arange(n, device=x.device)[None, :] < self.num_frames(lengths)[:, None]
        if self.top_db is not None:
            valid = mask.unsqueeze(-1)  # (B, F, 1)
            peak = logmel.masked_fill(~valid, -math.inf).amax((1, 2), keepdim=True)  # (B, 1, 1)
            floor = peak - self.top_db * math.log(10.0) / 10.0  # dB of power -> nats
            logmel = torch.maximum(logmel, floor.clamp_min(math.log(self.log_floor)))
        logmel = logmel * mask.unsqueeze(-1).to(logmel.dtype)  # zeros at invalid frames
        return Spectrogram(logmel, mask)


def masked_standardize(x: Tensor, mask: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-example, per-feature standardisation over valid steps (utterance-level CMVN).

    Statistics use only the steps where ``mask`` is True, so padding never changes them;
    invalid steps (and examples with no valid step) come out as zeros.

    Shape:
        x: (B, L, D)
        mask: (B, L) bool
        output: (B, L, D)
    """
    m = mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
    count = m.sum(1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    mean = (x * m).sum(1, keepdim=True) / count  # (B, 1, D)
    var = ((x - mean).square() * m).sum(1, keepdim=True) / count  # (B, 1, D)
    return (x - mean) / torch.sqrt(var + eps) * m


def masked_utterance_standardize(x: Tensor, mask: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-example standardisation with ONE mean and std over all features and valid steps.

    Unlike :func:`masked_standardize` (a mean and std per feature), this removes only the
    example's overall level and spread (recording gain, loudness), so the shape of its
    average spectrum is kept: on short single-word clips that shape is much of what tells
    the words apart, and per-band CMVN sets it to zero.  Invalid steps (and examples with no
    valid step) come out as zeros.

    Shape:
        x: (B, L, D)
        mask: (B, L) bool
        output: (B, L, D)
    """
    m = mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
    count = (m.sum((1, 2), keepdim=True) * x.shape[-1]).clamp_min(1.0)  # (B, 1, 1)
    mean = (x * m).sum((1, 2), keepdim=True) / count  # (B, 1, 1)
    var = ((x - mean).square() * m).sum((1, 2), keepdim=True) / count  # (B, 1, 1)
    return (x - mean) / torch.sqrt(var + eps) * m
