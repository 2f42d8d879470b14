"""Training-time augmentation of images, drawn from a seeded generator, so that a model
trained on a few thousand images meets more positions, sizes, slants and exposures.

:class:`ImageAugment` is what an image encoder holds (``image_cnn(augment={...})``); it
acts only while the encoder is in training mode.  Every transform is also a pure function
of its inputs and a :class:`torch.Generator` (draws on the CPU generator, moved to the
data's device); each is the identity at strength 0 and keeps shapes.

On images (B, C, H, W), in this order:

* one random **affine** map per image, resampled bilinearly (pixels that come from outside
  the image repeat its border, so a digit's black or a photo's edge extends instead of a
  grey frame of zeros appearing in normalised space):

  - ``rotation``: an angle uniform in ``[-rotation, rotation]`` degrees;
  - ``scale``: a zoom uniform in ``[1 - scale, 1 + scale]``;
  - ``shear``: a horizontal shear angle uniform in ``[-shear, shear]`` degrees (a slant);
  - ``translate``: a shift uniform in ``[-translate, translate]`` times the width and,
    independently, the height;
  - ``hflip``: a mirror image with probability ``hflip`` (off by default: it turns text
    and digits into other symbols);

  rotation and shear are in pixel units, so a non-square image is not distorted;
* ``contrast``: each image's deviations from its own mean multiplied by a factor uniform
  in ``[1 - contrast, 1 + contrast]``;
* ``brightness``: each image shifted by ``brightness`` times its own std times a draw
  uniform in ``[-1, 1]``.

Contrast and brightness are relative to each image's own statistics, so they mean the same
whether images are in [0, 1] or normalised with the ImageNet mean and std.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.layers.augment import Augment, build_from_mapping, check_number

#: The keys of an image ``augment`` mapping and their defaults (all off).
IMAGE_AUGMENT_DEFAULTS: dict[str, Any] = {
    "rotation": 0.0,
    "scale": 0.0,
    "shear": 0.0,
    "translate": 0.0,
    "hflip": 0.0,
    "contrast": 0.0,
    "brightness": 0.0,
}


def _uniform(generator: torch.Generator, b: int, bound: float) -> Tensor:
    """``b`` draws from U[-bound, bound) on the CPU generator (float64)."""
    return (2.0 * torch.rand(b, generator=generator, dtype=torch.float64) - 1.0) * bound


def affine_matrices(
    b: int,
    height: int,
    width: int,
    generator: torch.Generator,
    rotation: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
    translate: float = 0.0,
    hflip: float = 0.0,
) -> Tensor:
    """One random affine map per image, as :func:`torch.nn.functional.affine_grid` takes it:
    for each output pixel, where to read the input (normalised coordinates in [-1, 1]).

    Six draws per image whatever the strengths (angle, zoom, shear, two shifts, flip), so
    that the stream of draws does not depend on which transforms are on.

    Shape:
        output: (B, 2, 3), float64
    """
    angle = _uniform(generator, b, rotation) * (math.pi / 180.0)
    zoom = 1.0 + _uniform(generator, b, scale)
    slant = torch.tan(_uniform(generator, b, shear) * (math.pi / 180.0))
    shift = _uniform(generator, 2 * b, translate).view(b, 2) * 2.0  # fraction of side -> [-1, 1]
    flip = torch.rand(b, generator=generator, dtype=torch.float64) < hflip
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map in pixel units (x right, y down): p_out = zoom * R @ Shear @ Flip @ p_in
    fwd = torch.zeros(b, 2, 2, dtype=torch.float64)
    fwd[:, 0, 0] = cos
    fwd[:, 0, 1] = cos * slant - sin
    fwd[:, 1, 0] = sin
    fwd[:, 1, 1] = sin * slant + cos
    fwd = fwd * zoom[:, None, None]
    fwd[:, :, 0] = torch.where(flip[:, None], -fwd[:, :, 0], fwd[:, :, 0])
    inv = torch.linalg.inv(fwd)  # (B, 2, 2): p_in = inv @ p_out, in pixel units
    # to normalised units: p_pix = D p_norm with D = diag(W/2, H/2)
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    inv = inv * half[None, None, :] / half[None, :, None]  # D^-1 @ inv @ D
    offset = -(inv @ shift[:, :, None])  # (B, 2, 1): the output is shifted by +shift
    return torch.cat([inv, offset], dim=2)


def random_affine(
    images: Tensor,
    generator: torch.Generator,
    rotation: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
    translate: float = 0.0,
    hflip: float = 0.0,
) -> Tensor:
    """Resample each image through one random affine map (:func:`affine_matrices`); pixels
    read from outside the image repeat its border.  All strengths 0: ``images`` itself.

    Shape:
        images: (B, C, H, W); output: (B, C, H, W)
    """
    if not any((rotation, scale, shear, translate, hflip)):
        return images
    b, _, h, w = images.shape
    theta = affine_matrices(b, h, w, generator, rotation, scale, shear, translate, hflip)
    grid = F.affine_grid(
        theta.to(images.device, images.dtype), list(images.shape), align_corners=False
    )  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_contrast(images: Tensor, max_change: float, generator: torch.Generator) -> Tensor:
    """Multiply each image's deviations from its own mean by a factor from ``[1 -
    max_change, 1 + max_change]``.

    Shape:
        images: (B, C, H, W); output: (B, C, H, W)
    """
    if max_change == 0:
        return images
    factor = 1.0 + _uniform(generator, images.shape[0], max_change)
    factor = factor.to(images.device, images.dtype)[:, None, None, None]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return mean + factor * (images - mean)


def random_brightness(images: Tensor, max_shift: float, generator: torch.Generator) -> Tensor:
    """Shift each image by ``max_shift`` times its own std times a draw from [-1, 1].

    Shape:
        images: (B, C, H, W); output: (B, C, H, W)
    """
    if max_shift == 0:
        return images
    shift = _uniform(generator, images.shape[0], max_shift).to(images.device, images.dtype)
    std = images.flatten(1).std(dim=1, correction=0)  # (B,)
    return images + (shift * std)[:, None, None, None]


class ImageAugment(Augment):
    """The augmentations of an image encoder, drawn from ``self.generator``; see the module
    docstring for what each does.  Holds no parameters.

    Args:
        rotation: maximum rotation in degrees, in [0, 180].
        scale: maximum relative zoom, in [0, 0.99].
        shear: maximum horizontal shear in degrees, in [0, 60].
        translate: maximum shift as a fraction of the side, in [0, 0.5].
        hflip: probability of a mirror image, in [0, 1].
        contrast: maximum relative change of the contrast, in [0, 0.99].
        brightness: maximum shift in units of the image's std, in [0, 2].
        seed: the generator's seed.
    """

    defaults = IMAGE_AUGMENT_DEFAULTS
    example = "{rotation: 10, scale: 0.1, translate: 0.1}"

    def __init__(
        self,
        rotation: float = 0.0,
        scale: float = 0.0,
        shear: float = 0.0,
        translate: float = 0.0,
        hflip: float = 0.0,
        contrast: float = 0.0,
        brightness: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.rotation = check_number("rotation", rotation, 0.0, 180.0)
        self.scale = check_number("scale", scale, 0.0, 0.99)
        self.shear = check_number("shear", shear, 0.0, 60.0)
        self.translate = check_number("translate", translate, 0.0, 0.5)
        self.hflip = check_number("hflip", hflip, 0.0, 1.0)
        self.contrast = check_number("contrast", contrast, 0.0, 0.99)
        self.brightness = check_number("brightness", brightness, 0.0, 2.0)

    @property
    def active(self) -> bool:
        """Whether any transform has a non-zero strength."""
        return any(getattr(self, k) != 0 for k in self.defaults)

    def forward(self, images: Tensor, present: Tensor | None = None) -> Tensor:
        """The affine map, then contrast, then brightness; absent images (``present``
        False, zero-filled) are returned as they were.

        Shape:
            images: (B, C, H, W); present: (B,) bool or None; output: (B, C, H, W)
        """
        g = self.generator
        out = random_affine(
            images, g, self.rotation, self.scale, self.shear, self.translate, self.hflip
        )
        out = random_contrast(out, self.contrast, g)
        out = random_brightness(out, self.brightness, g)
        if present is not None:
            out = torch.where(present[:, None, None, None], out, images)
        return out


def build_image_augment(augment: Mapping[str, Any] | None, encoder: str) -> ImageAugment | None:
    """The :class:`ImageAugment` of an encoder's ``augment`` parameter (``None``: none).

    Raises:
        ValueError: an unknown key (listing the valid ones) or a value out of range, naming
            the encoder's ``augment`` parameter.
        TypeError: ``augment`` is not a mapping.
    """
    return build_from_mapping(ImageAugment, augment, encoder)


__all__ = [
    "IMAGE_AUGMENT_DEFAULTS",
    "ImageAugment",
    "affine_matrices",
    "build_image_augment",
    "random_affine",
    "random_brightness",
    "random_contrast",
]
