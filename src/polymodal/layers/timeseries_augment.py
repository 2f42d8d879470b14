"""Training-time augmentation of multichannel time series (IMU: accelerometer, gyroscope),
drawn from a seeded generator, so that a model trained on a few wearers and devices meets
more orientations, sensor gains and paces.

:class:`TimeSeriesAugment` is what a time-series encoder holds (``ts_cnn(augment={...})``);
it acts only while the encoder is in training mode.  Every transform is also a pure
function of its inputs and a :class:`torch.Generator` (draws on the CPU generator, moved to
the data's device), each is the identity at strength 0, and each keeps shapes and leaves
the invalid steps (padding, absent examples: ``mask`` False) as they were.

On values (B, T, C) with their valid-step mask (B, T), in this order:

* ``time_warp``: each example's valid steps resampled along a smooth monotone time map
  whose local speed varies within ``[1 - time_warp, 1 + time_warp]`` (4 random knots,
  linearly interpolated, integrated and rescaled so that the first and last valid steps
  stay in place; Um et al. 2017): a movement done a little faster here, slower there.
* ``rotation``: one random 3-D rotation per example (axis uniform on the sphere, angle
  uniform in ``[-rotation, rotation]`` degrees) applied to every channel triplet of
  ``rotation_groups`` alike: the accelerometer and gyroscope of a device turn together, as
  if the device were worn at another orientation.
* ``scale``: each example's channel groups (the triplets, and every other channel on its
  own) multiplied by a factor drawn from ``[1 - scale, 1 + scale]``: a sensor's gain, or a
  stronger or weaker movement; a triplet keeps its direction.
* ``jitter``: Gaussian noise of std ``jitter`` times each channel's std over the example's
  valid steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polymodal.layers.augment import Augment, build_from_mapping, check_number

#: The keys of a time-series ``augment`` mapping and their defaults (all off; no
#: ``rotation_groups``: consecutive triplets).
TIMESERIES_AUGMENT_DEFAULTS: dict[str, Any] = {
    "rotation": 0.0,
    "rotation_groups": None,
    "scale": 0.0,
    "time_warp": 0.0,
    "jitter": 0.0,
}

#: Knots of the random speed curve of :func:`time_warp` (a few: the warp is smooth).
WARP_KNOTS = 4


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    """Draws from U[low, high) on the CPU generator (float64)."""
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _keep_invalid(out: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """``out`` at valid steps, ``values`` elsewhere (padding and absent examples)."""
    return torch.where(mask[..., None], out, values)


def rotation_matrices(axes: Tensor, angles: Tensor) -> Tensor:
    """Rodrigues' rotation matrices: a rotation by ``angles`` (radians) about ``axes``.

    ``R = I + sin(a) K + (1 - cos(a)) K^2`` with ``K`` the cross-product matrix of the unit
    axis; orthonormal with determinant 1.

    Shape:
        axes: (B, 3), any non-zero length; angles: (B,); output: (B, 3, 3)
    """
    k = axes / axes.norm(dim=1, keepdim=True)  # (B, 3)
    zero = torch.zeros_like(k[:, 0])
    cross = torch.stack(
        [
            torch.stack([zero, -k[:, 2], k[:, 1]], 1),
            torch.stack([k[:, 2], zero, -k[:, 0]], 1),
            torch.stack([-k[:, 1], k[:, 0], zero], 1),
        ],
        1,
    )  # (B, 3, 3)
    eye = torch.eye(3, dtype=axes.dtype, device=axes.device).expand_as(cross)
    s, c = angles.sin()[:, None, None], angles.cos()[:, None, None]
    return eye + s * cross + (1 - c) * (cross @ cross)


def random_rotation(
    values: Tensor,
    mask: Tensor,
    max_degrees: float,
    groups: Sequence[Sequence[int]],
    generator: torch.Generator,
) -> Tensor:
    """Rotate each channel triplet of ``groups`` by one random rotation per example (the
    same for every triplet of the example); axis uniform on the sphere, angle uniform in
    ``[-max_degrees, max_degrees]``.  Channels outside ``groups`` are kept.

    Shape:
        values: (B, T, C); mask: (B, T) bool; output: (B, T, C)
    """
    if max_degrees == 0 or not groups:
        return values
    b = values.shape[0]
    axes = torch.randn(b, 3, generator=generator, dtype=torch.float64)  # (B, 3)
    angles = _uniform(generator, (b,), -max_degrees, max_degrees) * (math.pi / 180.0)
    rot = rotation_matrices(axes, angles).to(values.device, values.dtype)  # (B, 3, 3)
    out = values.clone()
    for group in groups:
        idx = list(group)
        out[..., idx] = values[..., idx] @ rot.transpose(1, 2)  # (B, T, 3): R x per step
    return _keep_invalid(out, values, mask)


def random_scale(
    values: Tensor,
    mask: Tensor,
    max_change: float,
    groups: Sequence[Sequence[int]],
    generator: torch.Generator,
) -> Tensor:
    """Multiply each example's channel groups by a factor from ``[1 - max_change, 1 +
    max_change]``: one factor per group of ``groups``, one per channel outside them.

    Shape:
        values: (B, T, C); mask: (B, T) bool; output: (B, T, C)
    """
    if max_change == 0:
        return values
    b, _, c = values.shape
    group_of = list(range(c))  # each channel its own group, unless in a triplet
    for k, group in enumerate(groups):
        for ch in group:
            group_of[ch] = c + k
    ids = {g: i for i, g in enumerate(dict.fromkeys(group_of))}
    index = torch.tensor([ids[g] for g in group_of])  # (C,)
    factors = _uniform(generator, (b, len(ids)), 1.0 - max_change, 1.0 + max_change)
    per_channel = factors[:, index].to(values.device, values.dtype)  # (B, C)
    return _keep_invalid(values * per_channel[:, None, :], values, mask)


def warp_positions(lengths: Tensor, t: int, max_warp: float, generator: torch.Generator) -> Tensor:
    """For each example, the (fractional) source step of each output step: a monotone map
    of ``[0, n - 1]`` onto itself whose slope varies within ``[1 - max_warp, 1 +
    max_warp]`` up to a common factor (``n`` = the example's valid length).

    Shape:
        lengths: (B,); output: (B, T) float64, non-decreasing over the valid steps
    """
    b = lengths.shape[0]
    knots = _uniform(generator, (b, WARP_KNOTS + 1), 1.0 - max_warp, 1.0 + max_warp)
    n = lengths.to(torch.float64).clamp_min(2.0)[:, None]  # (B, 1)
    steps = torch.arange(t, dtype=torch.float64)[None, :]  # (1, T)
    # the speed at each step: the knots spread evenly over the example's valid steps
    u = (steps / (n - 1)).clamp(max=1.0) * WARP_KNOTS  # (B, T) in [0, knots]
    lo = u.floor().clamp(max=WARP_KNOTS - 1)
    frac = u - lo
    lo_i = lo.long()
    speed = knots.gather(1, lo_i) * (1 - frac) + knots.gather(1, lo_i + 1) * frac  # (B, T)
    # integrate (trapezoids) over the valid steps, rescale so that step n-1 maps to n-1
    inc = torch.zeros_like(speed)
    inc[:, 1:] = 0.5 * (speed[:, 1:] + speed[:, :-1])
    inc = inc * (steps < n)
    pos = inc.cumsum(1)  # (B, T)
    total = pos.gather(1, (n.long() - 1).clamp(max=t - 1)).clamp_min(1e-12)  # (B, 1)
    return pos / total * (n - 1)


def time_warp(values: Tensor, mask: Tensor, max_warp: float, generator: torch.Generator) -> Tensor:
    """Resample each example's valid steps along a random smooth monotone time map (see
    :func:`warp_positions`), linearly interpolated; the first and last valid steps stay,
    the length and the padding too.  ``mask`` must mark a prefix of valid steps per row.

    Shape:
        values: (B, T, C); mask: (B, T) bool; output: (B, T, C)
    """
    if max_warp == 0 or values.shape[1] < 2:
        return values
    b, t, c = values.shape
    lengths = mask.sum(1).cpu()  # (B,)
    pos = warp_positions(lengths, t, max_warp, generator)  # (B, T)
    last = (lengths - 1).clamp_min(0)[:, None].to(torch.float64)
    pos = pos.clamp(min=0.0).minimum(last)
    lo = pos.floor()
    hi = (lo + 1).minimum(last)
    frac = (pos - lo).to(values.device, values.dtype)[..., None]  # (B, T, 1)
    idx_lo = lo.long().to(values.device)[..., None].expand(b, t, c)
    idx_hi = hi.long().to(values.device)[..., None].expand(b, t, c)
    out = values.gather(1, idx_lo) * (1 - frac) + values.gather(1, idx_hi) * frac
    short = (lengths < 2).to(values.device)[:, None]  # nothing to warp in 0 or 1 step
    return _keep_invalid(out, values, mask & ~short)


def jitter(values: Tensor, mask: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """Add Gaussian noise of std ``sigma`` times each channel's std over the example's
    valid steps (padding and absent examples unchanged).

    Shape:
        values: (B, T, C); mask: (B, T) bool; output: (B, T, C)
    """
    if sigma == 0:
        return values
    m = mask[..., None].to(values.dtype)  # (B, T, 1)
    count = m.sum(1).clamp_min(1.0)  # (B, 1)
    mean = (values * m).sum(1) / count  # (B, C)
    var = ((values - mean[:, None, :]).square() * m).sum(1) / count  # (B, C)
    noise = torch.randn(values.shape, generator=generator).to(values.device, values.dtype)
    out = values + sigma * var.sqrt()[:, None, :] * noise
    return _keep_invalid(out, values, mask)


def default_groups(channels: int) -> list[list[int]]:
    """Every consecutive channel triplet: ``[[0, 1, 2], [3, 4, 5], ...]``."""
    return [[i, i + 1, i + 2] for i in range(0, channels - channels % 3, 3)]


def _check_groups(groups: object, channels: int | None, rotation: float) -> list[list[int]]:
    """The rotation groups of ``rotation_groups`` (``None``: the consecutive triplets)."""
    if groups is None:
        if channels is None:
            return []
        if rotation > 0 and channels % 3 != 0:
            raise ValueError(
                f"The 'rotation' augmentation rotates channel triplets, but the series has "
                f"{channels} channels, not a multiple of 3; set 'rotation_groups' to the "
                "triplets to rotate (e.g. [[0, 1, 2]]) or rotation to 0."
            )
        return default_groups(channels)
    triplets: list[list[int]] = []
    if isinstance(groups, list | tuple):
        triplets = [list(g) for g in groups if isinstance(g, list | tuple) and len(g) == 3]
    flat = [i for g in triplets for i in g]
    ok = (
        isinstance(groups, list | tuple)
        and len(triplets) == len(groups) > 0
        and all(isinstance(i, int) and not isinstance(i, bool) for i in flat)
        and len(set(flat)) == len(flat)
        and (channels is None or all(0 <= i < channels for i in flat))
    )
    if not ok:
        what = f"channel indices in [0, {channels - 1}]" if channels is not None else "indices"
        raise ValueError(
            "The 'rotation_groups' augmentation must be a list of triplets of distinct "
            f"{what} (e.g. [[0, 1, 2], [3, 4, 5]] for a device's accelerometer and "
            f"gyroscope); got {groups!r}."
        )
    return triplets


class TimeSeriesAugment(Augment):
    """The augmentations of a time-series encoder, drawn from ``self.generator``; see the
    module docstring for what each does.  Holds no parameters.

    Args:
        rotation: maximum rotation angle in degrees, in [0, 180].
        rotation_groups: the channel triplets that rotate (and scale) together, e.g.
            ``[[0, 1, 2], [3, 4, 5]]``; ``None``: every consecutive triplet (the channel
            count must then be a multiple of 3 when ``rotation`` is on).
        scale: maximum relative change of a channel group's magnitude, in [0, 0.99].
        time_warp: maximum relative change of the local speed, in [0, 0.99].
        jitter: noise std as a fraction of each channel's std, >= 0.
        channels: the series' channel count C (passed by the encoder), to check
            ``rotation_groups``; ``None``: checked when called.
        seed: the generator's seed.
    """

    defaults = TIMESERIES_AUGMENT_DEFAULTS
    example = "{rotation: 15, scale: 0.1, time_warp: 0.1, jitter: 0.05}"

    def __init__(
        self,
        rotation: float = 0.0,
        rotation_groups: Sequence[Sequence[int]] | None = None,
        scale: float = 0.0,
        time_warp: float = 0.0,
        jitter: float = 0.0,
        channels: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.rotation = check_number("rotation", rotation, 0.0, 180.0)
        self.scale = check_number("scale", scale, 0.0, 0.99)
        self.time_warp = check_number("time_warp", time_warp, 0.0, 0.99)
        self.jitter = check_number("jitter", jitter, 0.0, math.inf)
        self.channels = channels
        self.rotation_groups = rotation_groups
        self.groups = _check_groups(rotation_groups, channels, self.rotation)

    @property
    def active(self) -> bool:
        """Whether any transform has a non-zero strength."""
        return any((self.rotation, self.scale, self.time_warp, self.jitter))

    def forward(self, values: Tensor, mask: Tensor) -> Tensor:
        """Time warp, rotation, scale and jitter, in that order.

        Shape:
            values: (B, T, C); mask: (B, T) bool, a prefix of valid steps per row;
            output: (B, T, C)
        """
        c = values.shape[-1]
        groups = self.groups
        if self.channels is None:
            groups = _check_groups(self.rotation_groups, c, self.rotation)
        elif c != self.channels:
            raise ValueError(
                f"TimeSeriesAugment was built for {self.channels} channels but got values "
                f"with {c}; build it with channels={c}."
            )
        g = self.generator
        values = time_warp(values, mask, self.time_warp, g)
        values = random_rotation(values, mask, self.rotation, groups, g)
        values = random_scale(values, mask, self.scale, groups, g)
        return jitter(values, mask, self.jitter, g)


def build_timeseries_augment(
    augment: Mapping[str, Any] | None, encoder: str, channels: int | None = None
) -> TimeSeriesAugment | None:
    """The :class:`TimeSeriesAugment` of an encoder's ``augment`` parameter (``None``:
    none), checked against the series' ``channels``.

    Raises:
        ValueError: an unknown key (listing the valid ones), a value out of range, rotation
            groups that do not fit the channels; naming the encoder's ``augment`` parameter.
        TypeError: ``augment`` is not a mapping.
    """
    return build_from_mapping(TimeSeriesAugment, augment, encoder, channels=channels)


__all__ = [
    "TIMESERIES_AUGMENT_DEFAULTS",
    "TimeSeriesAugment",
    "build_timeseries_augment",
    "default_groups",
    "jitter",
    "random_rotation",
    "random_scale",
    "rotation_matrices",
    "time_warp",
    "warp_positions",
]
