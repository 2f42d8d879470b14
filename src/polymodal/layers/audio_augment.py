"""Training-time audio augmentation: waveform and log-mel transforms drawn from a seeded
generator, so that a model trained on a few voices meets more of them.

:class:`AudioAugment` is what an audio encoder holds (``audio_cnn(augment={...})``); it
acts only while the encoder is in training mode, so evaluation and prediction see the
audio as it is.  Every transform is also a pure function of its inputs and a
:class:`torch.Generator` (draws on the CPU generator, moved to the data's device), and
each is the identity at strength 0.

On the waveform (B, T) with per-example ``lengths`` (samples), in this order:

* ``speed``: each clip resampled by a factor drawn uniformly from ``[1 - speed, 1 +
  speed]`` (Kaldi-style speed perturbation: tempo and pitch change together); a clip
  played faster gets shorter, a slower one longer.
* ``shift``: up to ``shift`` times the clip's length of silence put before it (a word
  that starts later).
* ``gain_db``: a gain drawn uniformly from ``[-gain_db, gain_db]`` dB.
* ``noise_p``, ``noise_snr``: with probability ``noise_p``, white noise at an SNR drawn
  uniformly from ``noise_snr`` = ``(low, high)`` dB of the clip's RMS.

On the normalised log-mel frames (B, F, n_mels) with their frame mask (B, F):

* ``freq_warp``: the mel axis stretched by a factor drawn from ``[1 - freq_warp, 1 +
  freq_warp]`` (frame k takes the value at mel position ``k * factor``, linearly
  interpolated, the top band held): a cheap stand-in for vocal tract length perturbation,
  which moves the formants of a voice, and for a pitch shift that keeps the tempo.
* ``freq_masks`` masks of up to ``freq_width`` bands and ``time_masks`` masks of up to
  ``time_width`` valid frames (SpecAugment, Park et al. 2019), set to 0 (the mean of the
  normalised log-mel).

``speed`` and ``shift`` change ``lengths`` (returned) and widen the batch when a clip
grows past its T (no clip is ever cut); the other transforms keep shapes and lengths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.layers.augment import Augment, build_from_mapping, check_count, check_number

#: The keys of an ``augment`` mapping and their defaults (all off).
AUGMENT_DEFAULTS: dict[str, Any] = {
    "speed": 0.0,
    "shift": 0.0,
    "gain_db": 0.0,
    "noise_p": 0.0,
    "noise_snr": (10.0, 40.0),
    "freq_warp": 0.0,
    "freq_masks": 0,
    "freq_width": 0,
    "time_masks": 0,
    "time_width": 0,
}


def _uniform(generator: torch.Generator, n: int, low: float, high: float, like: Tensor) -> Tensor:
    """``n`` draws from U[low, high) on the CPU generator, on ``like``'s device and dtype."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (low + (high - low) * u).to(like.device, like.dtype)


def speed_perturb(
    wave: Tensor, lengths: Tensor, max_change: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Resample each clip by a factor drawn from ``[1 - max_change, 1 + max_change]``.

    A clip of ``n`` samples played ``r`` times faster becomes ``round(n / r)`` samples
    (linear interpolation); the batch widens when a slowed clip needs it, so no clip is
    cut.  ``max_change=0`` returns the inputs unchanged.

    Shape:
        wave: (B, T); lengths: (B,) samples; output: (B, T'), (B,) with
        T' = max(T, the longest new clip)
    """
    if max_change == 0:
        return wave, lengths
    b, t = wave.shape
    rates = _uniform(generator, b, 1.0 - max_change, 1.0 + max_change, wave).tolist()
    sizes = [
        int(n) if n < 2 else max(1, round(int(n) / r))
        for n, r in zip(lengths.tolist(), rates, strict=True)
    ]
    out = wave.new_zeros(b, max([t, *sizes]))
    for i, (n, m) in enumerate(zip(lengths.tolist(), sizes, strict=True)):
        n = int(n)
        if n < 2:
            out[i, :n] = wave[i, :n]
            continue
        clip = F.interpolate(wave[i, None, None, :n], size=m, mode="linear", align_corners=True)
        out[i, :m] = clip[0, 0]
    return out, torch.tensor(sizes, dtype=lengths.dtype, device=lengths.device)


def time_shift(
    wave: Tensor, lengths: Tensor, max_fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Put up to ``max_fraction`` times each clip's length of silence before it (the batch
    widens when a clip needs it, so no clip is cut).

    Shape:
        wave: (B, T); lengths: (B,) samples; output: (B, T'), (B,) with T' >= T
    """
    if max_fraction == 0:
        return wave, lengths
    b, t = wave.shape
    u = torch.rand(b, generator=generator, dtype=torch.float64).tolist()
    pads = [int(f * max_fraction * int(n)) for n, f in zip(lengths.tolist(), u, strict=True)]
    new = torch.tensor(pads, dtype=lengths.dtype, device=lengths.device) + lengths
    out = wave.new_zeros(b, max(t, int(new.max())))
    for i, (n, k) in enumerate(zip(lengths.tolist(), pads, strict=True)):
        out[i, k : k + int(n)] = wave[i, : int(n)]
    return out, new


def random_gain(wave: Tensor, max_db: float, generator: torch.Generator) -> Tensor:
    """Scale each clip by a gain drawn from ``[-max_db, max_db]`` dB.

    Shape:
        wave: (B, T); output: (B, T)
    """
    if max_db == 0:
        return wave
    db = _uniform(generator, wave.shape[0], -max_db, max_db, wave)  # (B,)
    return wave * (10.0 ** (db / 20.0))[:, None]


def add_noise(
    wave: Tensor,
    lengths: Tensor,
    p: float,
    snr_db: tuple[float, float],
    generator: torch.Generator,
) -> Tensor:
    """With probability ``p`` per clip, add white noise at an SNR drawn from ``snr_db``
    (dB, relative to the clip's RMS over its valid samples); padding stays zero.

    Shape:
        wave: (B, T); lengths: (B,) samples; output: (B, T)
    """
    if p == 0:
        return wave
    b, t = wave.shape
    hit = (torch.rand(b, generator=generator) < p).to(wave.device, wave.dtype)  # (B,)
    snr = _uniform(generator, b, snr_db[0], snr_db[1], wave)  # (B,)
    noise = torch.randn(b, t, generator=generator).to(wave.device, wave.dtype)  # (B, T)
    valid = (torch.arange(t, device=wave.device)[None, :] < lengths[:, None]).to(wave.dtype)
    rms = ((wave * valid).square().sum(1) / valid.sum(1).clamp_min(1.0)).sqrt()  # (B,)
    scale = hit * rms * 10.0 ** (-snr / 20.0)  # (B,)
    return wave + scale[:, None] * noise * valid


def freq_warp(feats: Tensor, max_warp: float, generator: torch.Generator) -> Tensor:
    """Stretch each example's mel axis by a factor from ``[1 - max_warp, 1 + max_warp]``:
    band k takes the (interpolated) value at position ``k * factor``, the top band held.

    Shape:
        feats: (B, F, n_mels); output: (B, F, n_mels)
    """
    if max_warp == 0:
        return feats
    b, _, n = feats.shape
    factor = _uniform(generator, b, 1.0 - max_warp, 1.0 + max_warp, feats)  # (B,)
    pos = torch.arange(n, device=feats.device, dtype=feats.dtype)[None, :] * factor[:, None]
    pos = pos.clamp(max=n - 1)  # (B, n_mels)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo.to(pos.dtype))[:, None, :]  # (B, 1, n_mels)
    idx_lo = lo[:, None, :].expand_as(feats)
    idx_hi = hi[:, None, :].expand_as(feats)
    return feats.gather(2, idx_lo) * (1 - frac) + feats.gather(2, idx_hi) * frac


def spec_augment(
    feats: Tensor,
    mask: Tensor,
    freq_masks: int,
    freq_width: int,
    time_masks: int,
    time_width: int,
    generator: torch.Generator,
) -> Tensor:
    """Zero ``freq_masks`` bands of width U{0..freq_width} and ``time_masks`` spans of
    U{0..time_width} valid frames of each example (SpecAugment's masks, without warping).

    Shape:
        feats: (B, F, n_mels); mask: (B, F) bool, valid frames first; output: (B, F, n_mels)
    """
    b, f, n = feats.shape
    keep = torch.ones(b, f, n, dtype=torch.bool)
    valid = mask.sum(1).cpu()  # (B,)
    bands = torch.arange(n)[None, :]
    frames = torch.arange(f)[None, :]
    for _ in range(freq_masks if freq_width > 0 else 0):
        w = torch.randint(0, min(freq_width, n) + 1, (b,), generator=generator)  # (B,)
        start = (torch.rand(b, generator=generator) * (n - w + 1)).floor().long()
        hit = (bands >= start[:, None]) & (bands < (start + w)[:, None])  # (B, n_mels)
        keep &= ~hit[:, None, :]
    for _ in range(time_masks if time_width > 0 else 0):
        w = torch.minimum(
            torch.randint(0, time_width + 1, (b,), generator=generator), valid
        )  # (B,)
        start = (torch.rand(b, generator=generator) * (valid - w + 1)).floor().long()
        hit = (frames >= start[:, None]) & (frames < (start + w)[:, None])  # (B, F)
        keep &= ~hit[:, :, None]
    if bool(keep.all()):
        return feats
    return feats * keep.to(feats.device, feats.dtype)


class AudioAugment(Augment):
    """The augmentations of an audio encoder, drawn from ``self.generator``; see the module
    docstring for what each argument does.  Holds no parameters; the generator's state
    is saved with a run's checkpoints (so a resumed run draws the same numbers), and
    :func:`polymodal.models.build.build_model` seeds it from the run's seed.

    Args:
        speed: maximum relative speed change (0.1: factors 0.9-1.1), in [0, 0.5].
        shift: maximum leading silence, a fraction of the clip's length, in [0, 1].
        gain_db: maximum gain change in dB, >= 0.
        noise_p: probability of white noise per clip, in [0, 1].
        noise_snr: (low, high) SNR in dB of that noise.
        freq_warp: maximum relative stretch of the mel axis, in [0, 0.5].
        freq_masks, freq_width: SpecAugment's frequency masks, and their maximum width
            (bands).
        time_masks, time_width: SpecAugment's time masks, and their maximum width
            (frames).
        seed: the generator's seed.
    """

    defaults = AUGMENT_DEFAULTS
    example = "{speed: 0.1, freq_masks: 2, freq_width: 4}"

    def __init__(
        self,
        speed: float = 0.0,
        shift: float = 0.0,
        gain_db: float = 0.0,
        noise_p: float = 0.0,
        noise_snr: tuple[float, float] | list[float] = (10.0, 40.0),
        freq_warp: float = 0.0,
        freq_masks: int = 0,
        freq_width: int = 0,
        time_masks: int = 0,
        time_width: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.speed = check_number("speed", speed, 0.0, 0.5)
        self.shift = check_number("shift", shift, 0.0, 1.0)
        self.gain_db = check_number("gain_db", gain_db, 0.0, math.inf)
        self.noise_p = check_number("noise_p", noise_p, 0.0, 1.0)
        if (
            not isinstance(noise_snr, tuple | list)
            or len(noise_snr) != 2
            or noise_snr[0] > noise_snr[1]
        ):
            raise ValueError(
                "The 'noise_snr' augmentation must be [low, high] in dB with low <= high, "
                f"e.g. [10, 40]; got {noise_snr!r}."
            )
        snr = tuple(check_number("noise_snr", v, -math.inf, math.inf) for v in noise_snr)
        self.noise_snr: tuple[float, float] = (snr[0], snr[1])
        self.freq_warp = check_number("freq_warp", freq_warp, 0.0, 0.5)
        self.freq_masks = check_count("freq_masks", freq_masks)
        self.freq_width = check_count("freq_width", freq_width)
        self.time_masks = check_count("time_masks", time_masks)
        self.time_width = check_count("time_width", time_width)

    @property
    def waveform_active(self) -> bool:
        """Whether any waveform transform has a non-zero strength."""
        return any((self.speed, self.shift, self.gain_db, self.noise_p))

    @property
    def active(self) -> bool:
        """Whether any transform has a non-zero strength."""
        spec = (self.freq_masks and self.freq_width) or (self.time_masks and self.time_width)
        return self.waveform_active or bool(self.freq_warp) or bool(spec)

    def waveform(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Speed, shift, gain and noise, in that order.

        Shape:
            wave: (B, T); lengths: (B,) samples; output: (B, T'), (B,) with T' >= T
        """
        g = self.generator
        wave, lengths = speed_perturb(wave, lengths, self.speed, g)
        wave, lengths = time_shift(wave, lengths, self.shift, g)
        wave = random_gain(wave, self.gain_db, g)
        return add_noise(wave, lengths, self.noise_p, self.noise_snr, g), lengths

    def spectrogram(self, feats: Tensor, mask: Tensor) -> Tensor:
        """Frequency warp, then SpecAugment's masks.

        Shape:
            feats: (B, F, n_mels); mask: (B, F) bool; output: (B, F, n_mels)
        """
        g = self.generator
        feats = freq_warp(feats, self.freq_warp, g)
        return spec_augment(
            feats, mask, self.freq_masks, self.freq_width, self.time_masks, self.time_width, g
        )


def build_augment(augment: Mapping[str, Any] | None, encoder: str) -> AudioAugment | None:
    """The :class:`AudioAugment` of an encoder's ``augment`` parameter (``None``: none).

    Raises:
        ValueError: an unknown key (listing the valid ones) or a value out of range, naming
            the encoder's ``augment`` parameter.
        TypeError: ``augment`` is not a mapping.
    """
    return build_from_mapping(AudioAugment, augment, encoder)


__all__ = [
    "AUGMENT_DEFAULTS",
    "AudioAugment",
    "add_noise",
    "build_augment",
    "freq_warp",
    "random_gain",
    "spec_augment",
    "speed_perturb",
    "time_shift",
]
