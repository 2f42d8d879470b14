"""Audio resampling: :func:`resample_audio`, a band-limited Kaiser-windowed sinc resampler.

Also holds ``_check_rate``, the validation of a rate in Hz shared by the audio and video
decoders and by :func:`~polymodal.data.decode.decode_file`.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

_LOWPASS_WIDTH = 6  # zero crossings of the sinc on each side
_ROLLOFF = 0.99  # cutoff as a fraction of the lower Nyquist frequency
_KAISER_BETA = 14.769656459379492  # torchaudio's "sinc_interp_kaiser" default


def _check_rate(rate: float, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise TypeError(f"The '{name}' parameter must be an int (Hz); got {rate!r}.")
    if not (math.isfinite(rate) and rate > 0 and float(rate).is_integer()):
        raise ValueError(
            f"The '{name}' parameter must be a positive whole number of Hz; got {rate!r}."
        )
    return int(rate)


@functools.lru_cache(maxsize=32)
def _sinc_kernel(orig: int, new: int) -> tuple[Tensor, int]:
    """Polyphase kernel for gcd-reduced rates: (new, 1, 2 * width + orig) float64, width."""
    base = min(orig, new) * _ROLLOFF
    width = math.ceil(_LOWPASS_WIDTH * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    t = (t * base).clamp_(-_LOWPASS_WIDTH, _LOWPASS_WIDTH)
    beta = torch.tensor(_KAISER_BETA, dtype=torch.float64)
    window = torch.i0(beta * torch.sqrt(1 - (t / _LOWPASS_WIDTH) ** 2)) / torch.i0(beta)
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return sinc * window * (base / orig), width


def resample_audio(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Band-limited resampling with a Kaiser-windowed sinc (as torchaudio's ``resample``).

    The rates are reduced by their gcd and the signal is filtered by a polyphase bank of
    ``new / gcd`` kernels (6 zero crossings each side, cutoff 0.99 of the lower Nyquist
    frequency, Kaiser beta 14.77), so 44,100 -> 16,000 Hz costs a strided convolution.

    Args:
        wave: (..., T) floating tensor.
        orig_rate: its sampling rate in Hz.
        new_rate: the wanted rate in Hz.

    Returns:
        (..., ceil(T * new_rate / orig_rate)) tensor of ``wave``'s dtype; ``wave`` itself when
        the rates are equal.
    """
    if not isinstance(wave, Tensor):
        raise TypeError(f"The 'wave' parameter must be a torch.Tensor; got {type(wave).__name__}.")
    if not wave.is_floating_point():
        raise TypeError(
            f"The 'wave' parameter must be a floating tensor; got {wave.dtype}. "
            "Fix: convert integer PCM with wave.float() / 32768 (16-bit) first."
        )
    if wave.dim() == 0:
        raise ValueError("The 'wave' parameter must have a time axis (..., T); got a scalar.")
    orig = _check_rate(orig_rate, "orig_rate")
    new = _check_rate(new_rate, "new_rate")
    if orig == new:
        return wave
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    shape = wave.shape
    length = shape[-1]
    target = math.ceil(new * length / orig)
    compute = wave.dtype if wave.dtype in (torch.float32, torch.float64) else torch.float32
    kernel, width = _sinc_kernel(orig, new)
    kernel = kernel.to(device=wave.device, dtype=compute)
    x = wave.reshape(-1, length).to(compute)  # (N, T)
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x[:, None], kernel, stride=orig)  # (N, new, T // orig + ...)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)[:, :target]  # (N, target)
    return y.reshape(*shape[:-1], y.shape[-1]).to(wave.dtype)
