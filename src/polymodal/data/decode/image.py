"""Images: :func:`decode_image` (Pillow) and :func:`image_from_array` (in-memory uint8).

Also holds the ImageNet statistics, the ``Size`` alias and the shared image helpers
(``_parse_size``, ``_resize``, ``_normalize``, ...), which :mod:`.video` reuses for frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.decode.errors import PathLike, _at, _check_file, _error

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
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    hw = _parse_size(size)
    p = _check_file(path, where)
    try:
        with Image.open(p) as im:
            im.load()
            upright = ImageOps.exif_transpose(im)
            arr = _pil_to_unit_array(upright, grayscale)
    except UnidentifiedImageError:
        raise _error(
            "image",
            path,
            where,
            "Pillow does not recognise it as an image",
            "check that the file is an image (JPEG, PNG, ...) and not empty or misnamed",
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
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


def _pil_to_unit_array(im: Any, grayscale: bool) -> np.ndarray:
    """A Pillow image of any mode -> (H, W, C) float32 in [0, 1], C = 1 or 3."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im, dtype=np.float32)
        a = a / 65535.0 if mode.startswith("I") else a
        a = np.clip(a, 0.0, 1.0)[..., None]
        if not grayscale:
            a = np.repeat(a, 3, axis=2)
        return np.ascontiguousarray(a)
    im = im.convert("L" if grayscale else "RGB")
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
