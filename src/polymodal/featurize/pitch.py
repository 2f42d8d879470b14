"""Pitch and voicing per frame with YIN (de Cheveigné & Kawahara 2002), in torch.

:func:`yin` follows the paper's steps 2-5, vectorised over frames:

1. the difference function ``d(tau) = sum_j (x[j] - x[j + tau])^2`` over an integration
   window of ``W`` samples, from one FFT cross-correlation and two running energies;
2. the cumulative-mean-normalised difference ``d'(tau) = d(tau) tau / sum_{k<=tau} d(k)``
   (``d'(0) = 1``), which removes the dip at ``tau = 0`` and the bias towards short lags;
3. the absolute threshold: the first local minimum of ``d'`` below ``threshold`` within
   ``[sr / fmax, sr / fmin]``; when there is none the frame is unvoiced and its best lag is
   the global minimum (the paper's fallback, used only for the confidence);
4. parabolic interpolation of ``d'`` around that lag for a sub-sample period.

Frame ``i`` is centred on sample ``i * hop_length`` (zero padding at both ends), the same
grid as :class:`~polymodal.layers.melspec.LogMelSpectrogram`, so a signal of ``N`` samples
gives ``ceil(N / hop_length)`` frames.

Why YIN and not CREPE: the issue asked for torchcrepe's tiny model, but the torchcrepe
package imports torchaudio when imported and torchaudio cannot be installed beside the
torch this project pins, so its model cannot be used without re-implementing CREPE around
its weight file.  YIN needs no weights and no extra package, costs one small FFT per
frame, and on clean read speech (the GRID clips) and synthetic tones it is accurate to
well under a semitone; its weaknesses (octave errors in noisy or breathy speech, and a
voicing decision that is a fixed threshold rather than a learned classifier) matter less
for sentiment features than for music transcription.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class PitchTrack(NamedTuple):
    """Per-frame pitch of a signal.

    Attributes:
        f0_hz: (T,) float32 fundamental frequency in Hz, 0 where unvoiced.
        voicing: (T,) float32 in [0, 1]: ``1 - d'(tau*)`` at the chosen lag (1 = periodic).
    """

    f0_hz: Tensor
    voicing: Tensor


def num_frames(n_samples: int, hop_length: int) -> int:
    """Frames centred on samples ``0, hop, 2 hop, ...`` inside ``n_samples``: ``ceil(N / hop)``."""
    return -(-n_samples // hop_length)


def centered_frames(
    wave: Tensor, frame_length: int, hop_length: int, center: int | None = None
) -> Tensor:
    """Frames of ``frame_length`` samples whose ``center``-th sample is sample ``i * hop``.

    ``center`` defaults to ``frame_length // 2``.

    Shape:
        wave: (N,)
        output: (ceil(N / hop_length), frame_length), zero-padded at both ends
    """
    n = wave.shape[-1]
    t = num_frames(n, hop_length)
    left = frame_length // 2 if center is None else center
    if t == 0:
        return wave.new_zeros(0, frame_length)
    right = max(0, (t - 1) * hop_length + frame_length - left - n)
    padded = F.pad(wave, (left, right))
    return padded.unfold(-1, frame_length, hop_length)[:t]  # (T, frame_length)


def yin(
    wave: Tensor,
    sample_rate: int,
    hop_length: int,
    fmin: float = 50.0,
    fmax: float = 500.0,
    threshold: float = 0.2,
    window_length: int | None = None,
) -> PitchTrack:
    """YIN pitch track of a mono signal (see the module docstring for the algorithm).

    Args:
        wave: the signal.
        sample_rate: Hz.
        hop_length: samples between frame centres.
        fmin, fmax: the search range in Hz (lags ``sample_rate / fmax`` to ``sample_rate / fmin``).
        threshold: the absolute threshold on the normalised difference; a frame whose
            normalised difference never dips below it is unvoiced (f0 0).  The paper uses 0.1;
            0.2 keeps more of the voiced frames of real speech: on the 11 GRID clips it
            finds 32 % of all frames voiced (0.1: 26 %), and 0.5 % of the frames that both it
            and librosa's pYIN call voiced are more than two semitones from pYIN's f0.
        window_length: the integration window ``W`` in samples; default one period of
            ``fmin`` (``ceil(sample_rate / fmin)``), so the lowest pitch still spans one window.

    Returns:
        A :class:`PitchTrack` with ``ceil(N / hop_length)`` frames.

    Shape:
        wave: (N,)
        output.f0_hz, output.voicing: (T,) with T = ceil(N / hop_length)
    """
    if not 0 < fmin < fmax:
        raise ValueError(f"yin needs 0 < fmin < fmax; got fmin={fmin}, fmax={fmax}.")
    if fmax >= sample_rate / 2:
        raise ValueError(
            f"yin fmax={fmax} Hz must be below the Nyquist frequency {sample_rate / 2} Hz."
        )
    if not 0 < threshold < 1:
        raise ValueError(f"yin threshold must be in (0, 1); got {threshold}.")
    tau_min = max(2, math.floor(sample_rate / fmax))
    tau_max = math.ceil(sample_rate / fmin)
    w = tau_max if window_length is None else int(window_length)
    if w < 2:
        raise ValueError(f"yin window_length must be >= 2 samples; got {window_length}.")
    t = num_frames(wave.shape[-1], hop_length)
    if t == 0:
        empty = torch.zeros(0, dtype=torch.float32)
        return PitchTrack(empty, empty.clone())

    # x[:W] is compared with x[tau : tau + W], so the samples used are centred on
    # (W + tau) / 2; place that on the frame time for a typical lag (the geometric mean
    # of the search range), so a changing pitch is not reported late or early.
    typical = round(sample_rate / math.sqrt(fmin * fmax))
    x = centered_frames(wave.to(torch.float64), w + tau_max + 1, hop_length, (w + typical) // 2)
    length = x.shape[-1]
    n_fft = 1 << (length + w - 1).bit_length()
    # d(tau) = e0 + e(tau) - 2 c(tau), tau = 0..tau_max + 1
    spec = torch.fft.rfft(x, n_fft)  # (T, n_fft // 2 + 1)
    head = torch.fft.rfft(x[:, :w], n_fft)
    corr = torch.fft.irfft(spec * head.conj(), n_fft)[:, : tau_max + 2]  # (T, tau_max + 2)
    csum = F.pad(x.square().cumsum(-1), (1, 0))  # (T, L + 1)
    lags = torch.arange(tau_max + 2)
    energy = csum[:, lags + w] - csum[:, lags]  # (T, tau_max + 2): sum of x[tau : tau + W]^2
    diff = (energy[:, :1] + energy - 2.0 * corr).clamp_min(0.0)  # (T, tau_max + 2)

    # cumulative-mean-normalised difference; d'(0) = 1, and 1 where the running mean is 0
    running = diff[:, 1:].cumsum(-1)  # (T, tau_max + 1)
    scale = lags[1:].to(diff.dtype)
    cmnd = torch.ones_like(diff)
    ok = running > 1e-12 * energy[:, :1].clamp_min(1e-30)
    cmnd[:, 1:] = torch.where(ok, diff[:, 1:] * scale / running.clamp_min(1e-30), 1.0)

    # absolute threshold: the first local minimum below it inside [tau_min, tau_max]
    lag_range = torch.arange(tau_min, tau_max + 1)
    here = cmnd[:, lag_range]  # (T, R)
    before = cmnd[:, lag_range - 1]
    after = cmnd[:, lag_range + 1]
    trough = (here <= before) & (here < after)
    candidate = trough & (here < threshold)
    voiced = candidate.any(-1)  # (T,)
    first = candidate.to(torch.uint8).argmax(-1)  # (T,)
    best = torch.where(voiced, first, here.argmin(-1))  # (T,) index into lag_range
    tau = lag_range[best]  # (T,)

    # parabolic interpolation of d' around tau
    rows = torch.arange(t)
    y0, y1, y2 = cmnd[rows, tau - 1], cmnd[rows, tau], cmnd[rows, tau + 1]
    curvature = y0 - 2.0 * y1 + y2
    shift = torch.where(curvature > 0, 0.5 * (y0 - y2) / curvature.clamp_min(1e-12), 0.0)
    period = tau.to(torch.float64) + shift.clamp(-1.0, 1.0)
    minimum = (y1 - 0.25 * (y0 - y2) * shift).clamp(0.0, 1.0)

    f0 = torch.where(voiced, sample_rate / period, 0.0)
    voicing = (1.0 - minimum).clamp(0.0, 1.0)
    return PitchTrack(f0.to(torch.float32), voicing.to(torch.float32))
