"""Images: :func:`decode_image` (Pillow) and :func:`image_from_array` (in-memory uint8).

Also holds the ImageNet statistics, the ``Size`` alias, the shared image helpers
(``_parse_size``, ``_resize``, ``_normalize``, ...), which :mod:`.video` reuses for frames,
the pixel check (``_check_pixels``) and :func:`inferred_image_shape` (the size a manifest
without a schema resizes its images to).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.decode.errors import DecodeError, PathLike, _at, _check_file, _error
from polymodal.data.decode.limits import get_limits, limit_error

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Size = int | tuple[int, int]


# --------------------------------------------------------------------------------------
# Shared image helpers
# --------------------------------------------------------------------------------------


def _parse_size(size: Size | None, name: str = "size") -> tuple[int, int] | None:
    """``None``, an int (square) or ``(H, W)`` -> ``(H, W)``; a ``ValueError`` otherwise."""
    if size is None:
        return None
    if isinstance(size, bool):
        raise TypeError(f"The '{name}' parameter must be an int or (H, W); got {size!r}.")
    if isinstance(size, int):
        hw = (size, size)
    elif (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise TypeError(
            f"The '{name}' parameter must be an int (square) or a pair (H, W) of ints; "
            f"got {size!r}."
        )
    if hw[0] <= 0 or hw[1] <= 0:
        raise ValueError(f"The '{name}' parameter must be positive; got {size!r}.")
    return hw


def _resize(x: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Bilinear resize with antialiasing of (C, H, W) or (N, C, H, W) values in [0, 1]."""
    if size is None or tuple(x.shape[-2:]) == size:
        return x
    batched = x.dim() == 4
    out = F.interpolate(
        x if batched else x[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )
    out = out.clamp_(0.0, 1.0)
    return out if batched else out[0]


def _normalize(
    x: Tensor, mean: Sequence[float], std: Sequence[float]
) -> Tensor:  # x: (C, H, W) in [0, 1]
    c = x.shape[0]
    m = [float(v) for v in mean]
    s = [float(v) for v in std]
    if c == 1 and len(m) == 3 and len(s) == 3:
        # Grayscale with the (RGB) default statistics: use their average.
        m, s = [sum(m) / 3], [sum(s) / 3]
    for name, vals in (("mean", m), ("std", s)):
        if len(vals) not in (1, c):
            raise ValueError(
                f"The '{name}' parameter must have 1 or {c} values (one per channel); "
                f"got {len(vals)}: {vals}."
            )
    if any(v <= 0 for v in s):
        raise ValueError(f"The 'std' parameter must be positive; got {s}.")
    mt = torch.tensor(m, dtype=x.dtype).view(-1, 1, 1)
    st = torch.tensor(s, dtype=x.dtype).view(-1, 1, 1)
    return (x - mt) / st


def _finish_image(
    x: Tensor,
    hw: tuple[int, int] | None,
    normalize: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> Tensor:
    """(C, H, W) float32 in [0, 1] -> resized to ``hw`` and (optionally) normalised."""
    x = _resize(x, hw)
    if normalize:
        x = _normalize(x, mean, std)
    return x.contiguous()


_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L")


def _to_channels(x: Tensor, grayscale: bool) -> Tensor:
    """(C, H, W) with C in {1, 3} -> 1 channel (luma) or 3 channels (replicated)."""
    if grayscale and x.shape[0] == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype).view(3, 1, 1)
        return (x * w).sum(0, keepdim=True)
    if not grayscale and x.shape[0] == 1:
        return x.expand(3, -1, -1)
    return x


def _check_pixels(
    width: int, height: int, path: PathLike | None, where: str, what: str = "image"
) -> None:
    """A :class:`LimitError` when ``width x height`` is over ``max_image_pixels``."""
    pixels = int(width) * int(height)
    if pixels > get_limits().max_image_pixels:
        raise limit_error(
            what,
            path,
            where,
            f"it is {width:,} x {height:,} = {pixels:,} pixels (read from its header; "
            "nothing was decoded)",
            "max_image_pixels",
            pixels,
            "shrink it first (e.g. `convert IN -resize 4096x4096 OUT`)",
        )


def _reduce_factor(width: int, height: int, hw: tuple[int, int] | None) -> int:
    """The integer factor an image can be shrunk by while staying >= 2x the target ``hw``."""
    if hw is None:
        return 1
    return max(1, min(width, height) // (2 * max(hw)))


def inferred_image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """The (C, H, W) every image is resized to when only the first image's (C, H, W) is known.

    A manifest without a schema takes its image size from its first image; this scales
    that size *down* (aspect ratio kept) so its longer side is at most
    ``DecodeLimits.inferred_image_side`` (224 by default), and never up: a 28 x 28 first
    image stays 28 x 28, a 10,000 x 10,000 one becomes 224 x 224 rather than making every
    other image that large.
    """
    c, h, w = (int(v) for v in shape)
    side = get_limits().inferred_image_side
    longest = max(h, w)
    if longest <= side:
        return (c, h, w)
    scale = side / longest
    return (c, max(1, round(h * scale)), max(1, round(w * scale)))


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------


def decode_image(
    path: PathLike,
    size: Size | None = None,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    grayscale: bool = False,
    *,
    where: str = "",
) -> Tensor:
    """Read an image file with Pillow.

    Any mode is accepted: palette (``P``), ``L``, ``LA``, ``RGBA`` (alpha dropped), ``CMYK``,
    ``YCbCr``, 16-bit (``I;16``, ``I``; scaled by 1/65535) and float (``F``; taken as [0, 1]).
    The EXIF orientation tag is applied; an animated file gives its first frame.

    Bounded: the pixel count is read from the header and an image over
    ``max_image_pixels`` (:mod:`~polymodal.data.decode.limits`) is refused before it is
    decoded.  With ``size``, an image at least 4x larger than the target is shrunk while it
    is decoded (JPEG DCT scaling, then Pillow's ``reduce``) to no less than twice the
    target, before the antialiased resize, so a large photo never becomes a full-size
    float tensor.

    Args:
        path: the image file.
        size: resize to ``(H, W)`` (an int means square) with bilinear antialiasing;
            ``None`` keeps the file's size.
        normalize: subtract ``mean`` and divide by ``std`` per channel after scaling to [0, 1].
        mean, std: per-channel statistics (ImageNet by default; a 3-value default is averaged
            for grayscale output).
        grayscale: return one luma channel instead of RGB.
        where: context for error messages.

    Returns:
        (3, H, W) float32 (or (1, H, W) with ``grayscale``); in [0, 1] unless ``normalize``.

    Raises:
        LimitError: the header declares more than ``max_image_pixels`` pixels.
        DecodeError: not an image, or damaged.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    hw = _parse_size(size)
    p = _check_file(path, where)
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own bound; ours (checked next) is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(p)
        with opened as im:
            _check_pixels(im.width, im.height, path, where)  # header only: nothing decoded
            if hw is not None and im.format == "JPEG":
                m = 2 * max(hw)
                im.draft(None, (m, m))  # decode at 1/2, 1/4 or 1/8 scale, >= 2x the target
            im.load()
            upright = ImageOps.exif_transpose(im)
            arr = _pil_to_unit_array(upright, grayscale, hw)
    except DecodeError:  # a LimitError is a ValueError: not "damaged"
        raise
    except Image.DecompressionBombError as e:
        raise _pillow_bomb_error(e, path, where) from None
    except UnidentifiedImageError:
        raise _error(
            "image",
            path,
            where,
            "Pillow does not recognise it as an image",
            "check that the file is an image (JPEG, PNG, ...) and not empty or misnamed",
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise _error(
            "image",
            path,
            where,
            f"the file is damaged or truncated ({e})",
            "re-export or re-download the image, or remove it from the data",
        ) from e
    x = torch.from_numpy(arr)  # (H, W, C)
    x = x.permute(2, 0, 1).contiguous()  # (C, H, W)
    return _finish_image(x, hw, normalize, mean, std)


def _pillow_bomb_error(e: Exception, path: PathLike, where: str) -> Exception:
    """Pillow's own refusal (above ``PIL.Image.MAX_IMAGE_PIXELS`` x 2) in our words."""
    from PIL import Image

    m = re.search(r"\((\d+) pixels\)", str(e))
    if m is None:  # pragma: no cover - Pillow's wording changed
        return _error("image", path, where, f"Pillow refuses it ({e})", "shrink the image")
    pixels = int(m.group(1))
    if pixels <= get_limits().max_image_pixels:
        return _error(
            "image",
            path,
            where,
            f"it has {pixels:,} pixels, over Pillow's own bound (2 x PIL.Image.MAX_IMAGE_PIXELS "
            f"= {2 * (Image.MAX_IMAGE_PIXELS or 0):,}), which applies besides max_image_pixels",
            f"shrink the image, or also raise PIL.Image.MAX_IMAGE_PIXELS to {pixels:,}",
        )
    return limit_error(
        "image",
        path,
        where,
        f"it has {pixels:,} pixels (read from its header; nothing was decoded)",
        "max_image_pixels",
        pixels,
        "shrink it first (e.g. `convert IN -resize 4096x4096 OUT`)",
    )


def _pil_to_unit_array(im: Any, grayscale: bool, hw: tuple[int, int] | None = None) -> np.ndarray:
    """A Pillow image of any mode -> (H, W, C) float32 in [0, 1], C = 1 or 3.

    With a target ``hw``, the image is first shrunk by an integer factor (box filter, in
    its own 8/32-bit mode) to no less than twice ``hw``, so the float array stays small.
    """
    mode = im.mode
    factor = _reduce_factor(im.width, im.height, hw)
    if mode.startswith("I") or mode == "F":
        if factor > 1:
            im = (im if mode in ("I", "F") else im.convert("I")).reduce(factor)
        a = np.asarray(im, dtype=np.float32)
        a = a / 65535.0 if mode.startswith("I") else a
        a = np.clip(a, 0.0, 1.0)[..., None]
        if not grayscale:
            a = np.repeat(a, 3, axis=2)
        return np.ascontiguousarray(a)
    im = im.convert("L" if grayscale else "RGB")
    if factor > 1:
        im = im.reduce(factor)
    a = np.asarray(im, dtype=np.float32) / 255.0
    if a.ndim == 2:
        a = a[..., None]
    return np.ascontiguousarray(a)


def image_from_array(
    arr: np.ndarray,
    size: Size | None = None,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    grayscale: bool = False,
    *,
    where: str = "",
) -> Tensor:
    """An in-memory uint8 image (e.g. an MNIST digit) through :func:`decode_image`'s path.

    Args:
        arr: (H, W), (H, W, 1) or (H, W, 3) ``uint8`` array.
        size, normalize, mean, std, grayscale: as in :func:`decode_image`; a grey input gives
            3 equal channels unless ``grayscale``, an RGB input gives luma with ``grayscale``.
        where: context for error messages.

    Returns:
        (3, H, W) float32 (or (1, H, W) with ``grayscale``).
    """
    hw = _parse_size(size)
    if not isinstance(arr, np.ndarray):
        raise TypeError(
            f"image_from_array expects a numpy array{_at(where)}; got {type(arr).__name__}."
        )
    if arr.dtype != np.uint8:
        raise TypeError(
            f"image_from_array expects dtype uint8 (values 0-255){_at(where)}; got {arr.dtype}. "
            "Fix: convert with arr.astype(np.uint8) after scaling to 0-255."
        )
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3))):
        raise ValueError(
            f"image_from_array expects shape (H, W), (H, W, 1) or (H, W, 3){_at(where)}; "
            f"got {arr.shape}."
        )
    if arr.size == 0:
        raise ValueError(f"image_from_array got an empty array of shape {arr.shape}{_at(where)}.")
    x = torch.from_numpy(arr.astype(np.float32)) / 255.0  # a copy: read-only arrays are fine
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)  # (C, H, W)
    x = _to_channels(x, grayscale).contiguous()
    return _finish_image(x, hw, normalize, mean, std)
