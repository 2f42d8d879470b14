"""Decoders: one file (or cell) in, one tensor (or string) out, with errors that say where.

Each decoder is a thin layer over the library made for its format (Pillow for images,
soundfile for audio, PyAV for video, numpy/csv for time series and features) and returns
the value layout documented on :class:`~polymodal.data.modality.ModalityKind`:

============ ============================================ ==============================
kind         decoder                                      returns
============ ============================================ ==============================
text         :func:`decode_text`                          ``str``
image        :func:`decode_image`, :func:`image_from_array` (3, H, W) float32
audio        :func:`decode_audio`                         (T,) float32 (or (C, T))
video        :func:`decode_video`                         :class:`VideoClip`
timeseries   :func:`decode_timeseries`                    :class:`TimeSeries`
features     :func:`decode_features`                      (D,) or (T, D) float32
============ ============================================ ==============================

:func:`decode_file` dispatches on a kind and reads sizes and rates from a
:class:`~polymodal.data.modality.ModalitySpec`.

Every decoder takes a keyword ``where`` (e.g. ``"row 12, column 'audio'"``) that it puts in
its error messages, so that a bad cell in a 10,000-row manifest can be found.  A file that
cannot be decoded raises :class:`DecodeError` (a ``ValueError``); a file that does not exist
raises :class:`MissingFileError` (both a ``DecodeError`` and a ``FileNotFoundError``).
"""

from __future__ import annotations

import csv
import difflib
import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.registry import unknown_name_error

__all__ = [
    "EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DecodeError",
    "Decoded",
    "MissingFileError",
    "TimeSeries",
    "VideoClip",
    "decode_audio",
    "decode_features",
    "decode_file",
    "decode_image",
    "decode_text",
    "decode_timeseries",
    "decode_video",
    "image_from_array",
    "kind_from_extension",
    "resample_audio",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

PathLike = str | os.PathLike[str]
Size = int | tuple[int, int]

EXTENSIONS: dict[ModalityKind, tuple[str, ...]] = {
    ModalityKind.IMAGE: (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    ModalityKind.AUDIO: (".wav", ".flac", ".ogg"),
    ModalityKind.VIDEO: (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm"),
    ModalityKind.TIMESERIES: (".csv",),
    ModalityKind.FEATURES: (".npy", ".npz", ".pt", ".pth"),
}
"""Lowercase file extensions of each kind; used to infer a manifest column's kind."""

_KIND_BY_EXT = {ext: kind for kind, exts in EXTENSIONS.items() for ext in exts}

_TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class DecodeError(ValueError):
    """A file or cell could not be decoded.

    The message names the file (and the ``where`` context, e.g. ``row 12, column 'audio'``),
    says what is wrong and how to fix it.  ``path`` and ``where`` are kept as attributes.
    """

    def __init__(self, message: str, *, path: PathLike | None = None, where: str = "") -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.where = where


class MissingFileError(DecodeError, FileNotFoundError):
    """A file named by a manifest or a caller does not exist."""


def _loc(path: PathLike | None, where: str) -> str:
    """``'file.jpg' (row 3, column 'image')``: the place an error is about."""
    parts = [] if path is None else [f"'{os.fspath(path)}'"]
    if where:
        parts.append(f"({where})")
    return " ".join(parts) if parts else "value"


def _error(what: str, path: PathLike | None, where: str, problem: str, fix: str) -> DecodeError:
    return DecodeError(
        f"Cannot decode {what} {_loc(path, where)}: {problem}. Fix: {fix}", path=path, where=where
    )


def _check_file(path: PathLike, where: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise MissingFileError(
            f"File not found: '{os.fspath(path)}'"
            + (f" ({where})" if where else "")
            + ". Check the path: relative paths in a manifest are resolved against the "
            "manifest's folder, and the file may have been moved or not downloaded.",
            path=path,
            where=where,
        )
    if p.is_dir():
        raise DecodeError(
            f"Expected a file but '{os.fspath(path)}'"
            + (f" ({where})" if where else "")
            + " is a directory. Fix: point at a file inside it.",
            path=path,
            where=where,
        )
    return p


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


def _at(where: str) -> str:
    return f" ({where})" if where else ""


# --------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------

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


def decode_audio(
    path: PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    max_seconds: float | None = None,
    *,
    where: str = "",
) -> Tensor:
    """Read a WAV/FLAC/OGG file with soundfile.

    Args:
        path: the audio file.
        sample_rate: resample to this rate (Hz) with :func:`resample_audio` when it differs
            from the file's; ``None`` keeps the file's rate.
        mono: mix the channels down to their mean.
        max_seconds: read at most this many seconds from the start.
        where: context for error messages.

    Returns:
        (T,) float32 with ``mono`` (else (C, T)).  Integer PCM is scaled to [-1, 1); float
        files are returned as stored, and resampling may overshoot +-1 slightly at
        full-scale transients (nothing is clipped).

    Raises:
        DecodeError: unreadable, empty, or containing NaN/inf samples.
    """
    import soundfile as sf

    p = _check_file(path, where)
    if max_seconds is not None and not (
        isinstance(max_seconds, int | float) and math.isfinite(max_seconds) and max_seconds > 0
    ):
        raise ValueError(
            f"The 'max_seconds' parameter must be a positive number or None; got {max_seconds!r}."
        )
    target_rate = None if sample_rate is None else _check_rate(sample_rate, "sample_rate")
    try:
        with sf.SoundFile(p) as f:
            rate = int(f.samplerate)
            frames = -1 if max_seconds is None else max(1, round(max_seconds * rate))
            data = f.read(frames=frames, dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise _error(
            "audio",
            path,
            where,
            f"soundfile cannot read it ({e})",
            "check that it is a complete WAV, FLAC or OGG file; re-export or re-download it",
        ) from e
    missing = _wav_missing_bytes(p)
    if missing:
        raise _error(
            "audio",
            path,
            where,
            f"the WAV header declares {missing} more bytes of audio than the file holds "
            "(the file is truncated)",
            "re-copy or re-export the complete file",
        )
    if data.shape[0] == 0:
        raise _error(
            "audio",
            path,
            where,
            "the file holds no samples",
            "re-record or re-export it, or mark the modality missing for this example",
        )
    bad = ~np.isfinite(data)
    if bad.any():
        what = "every sample is NaN/inf" if bad.all() else f"{int(bad.sum())} samples are NaN/inf"
        raise _error(
            "audio", path, where, what, "re-export the file; a float WAV must hold finite samples"
        )
    wave = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, T)
    if mono:
        wave = wave.mean(0)  # (T,)
    if target_rate is not None and target_rate != rate:
        wave = resample_audio(wave, rate, target_rate)
    return wave.contiguous()


# --------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------


@dataclass
class VideoClip:
    """Decoded frames (and optionally the audio track) of a video file.

    Attributes:
        frames: (T, 3, H, W) float32 in [0, 1].
        timestamps: (T,) float64 seconds from the first video frame.
        fps: frame rate of ``frames`` (the target rate, or the stream's native rate).
        audio: (S,) float32 mono waveform starting at the first video frame, or ``None``.
        audio_rate: sampling rate of ``audio`` in Hz, or ``None``.
    """

    frames: Tensor
    timestamps: Tensor
    fps: float
    audio: Tensor | None = None
    audio_rate: int | None = None

    @property
    def duration(self) -> float:
        """Seconds covered by ``frames``: ``T / fps``."""
        return len(self.frames) / self.fps if self.fps > 0 else 0.0


def decode_video(
    path: PathLike,
    fps: float | None = None,
    size: Size | None = None,
    max_frames: int | None = None,
    audio_rate: int | None = None,
    *,
    where: str = "",
) -> VideoClip:
    """Read a video file with PyAV, sampling frames by timestamp.

    With ``fps``, the target times are ``t = k / fps`` (seconds from the first frame) for
    every ``t`` before the end of the stream (last frame time + one native frame), and each
    takes the latest decoded frame at or before ``t``; without it, every frame is kept.

    Args:
        path: the video file (MP4, MPEG, AVI, MOV, MKV, WebM: whatever FFmpeg reads).
        fps: target frame rate; ``None`` keeps the native frames.
        size: resize frames to ``(H, W)`` (int means square) with bilinear antialiasing.
        max_frames: keep at most this many (sampled) frames; the audio is cut to the same span.
        audio_rate: also decode the first audio track, mix it to mono and resample it to this
            rate (Hz); the audio is aligned to start at the first video frame (zero-padded
            or trimmed).  ``clip.audio`` is ``None`` when the file has no audio track.
        where: context for error messages.

    Returns:
        A :class:`VideoClip`.

    Raises:
        DecodeError: FFmpeg cannot open or decode the file, reports damaged data (a file cut
            short usually decodes a few frames, then fails: that is an error, not a short
            clip), or no frame could be decoded.
    """
    import av
    import av.logging

    p = _check_file(path, where)
    if fps is not None and not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"The 'fps' parameter must be a positive number or None; got {fps!r}.")
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1
    ):
        raise ValueError(
            f"The 'max_frames' parameter must be a positive int or None; got {max_frames!r}."
        )
    hw = _parse_size(size)
    arate = None if audio_rate is None else _check_rate(audio_rate, "audio_rate")

    prev_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(True) as logs:
            result = _decode_video_stream(p, fps, hw, max_frames, arate, path, where)
    except av.error.FFmpegError as e:
        raise _error(
            "video",
            path,
            where,
            f"FFmpeg failed ({e})",
            "check that the file is a complete video; re-encode it, e.g. "
            "`ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`, or re-download it",
        ) from e
    finally:
        av.logging.set_level(prev_level)
    errors = [msg.strip() for level, _, msg in logs if level <= av.logging.ERROR]
    if errors:
        clip = result
        raise _error(
            "video",
            path,
            where,
            f"FFmpeg reported damaged data after {len(clip.frames)} frame(s) "
            f"({'; '.join(errors[:3])}); the file is probably truncated or corrupt",
            "re-download or re-encode the file, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`",
        )
    return result


def _frame_time(frame: Any, index: int, rate: float | None) -> float:
    if frame.time is not None:
        return float(frame.time)
    return index / rate if rate else float(index)


def _rgb_frame(frame: Any, hw: tuple[int, int] | None) -> Tensor:
    """A PyAV video frame -> (3, H, W) float32 in [0, 1], resized."""
    rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
    x = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32) / 255.0
    return _resize(x, hw)


def _decode_video_stream(
    p: Path,
    fps: float | None,
    hw: tuple[int, int] | None,
    max_frames: int | None,
    arate: int | None,
    path: PathLike,
    where: str,
) -> VideoClip:
    import av

    with av.open(os.fspath(p)) as container:
        if not container.streams.video:
            raise _error(
                "video",
                path,
                where,
                "the file has no video stream",
                "decode it as audio, or check that this is the intended file",
            )
        vstream = container.streams.video[0]
        astream = (
            container.streams.audio[0] if (arate is not None and container.streams.audio) else None
        )
        native = vstream.average_rate or vstream.guessed_rate
        native_fps = float(native) if native else None

        frames: list[Tensor] = []
        times: list[float] = []
        t0: float | None = None
        n_decoded = 0
        prev: Any = None  # the latest decoded frame (PyAV) not yet past a target
        prev_t = 0.0
        k = 0  # next target index when sampling by fps
        done_video = False
        clip_end: float | None = None  # set when max_frames stops the video early

        audio_parts: list[np.ndarray] = []
        audio_t0: float | None = None
        audio_in_rate = 0
        audio_samples = 0
        resampler = av.AudioResampler(format="fltp") if astream is not None else None
        done_audio = astream is None

        streams = [vstream] + ([astream] if astream is not None else [])
        for packet in container.demux(*streams):
            if done_video and done_audio:
                break
            if packet.stream.type == "video":
                if done_video:
                    continue
                for frame in packet.decode():
                    t_abs = _frame_time(frame, n_decoded, native_fps)
                    n_decoded += 1
                    if t0 is None:
                        t0 = t_abs
                    t = t_abs - t0
                    if fps is None:
                        frames.append(_rgb_frame(frame, hw))
                        times.append(t)
                    else:
                        # Targets strictly before this frame belong to the previous one.
                        while prev is not None and k / fps < t - 1e-9:
                            frames.append(_rgb_frame(prev, hw))
                            times.append(k / fps)
                            k += 1
                            if max_frames is not None and len(frames) >= max_frames:
                                break
                        prev, prev_t = frame, t
                    if max_frames is not None and len(frames) >= max_frames:
                        done_video = True
                        step = (
                            (1 / fps)
                            if fps is not None
                            else (1 / native_fps if native_fps else 0.0)
                        )
                        clip_end = times[max_frames - 1] + step
                        break
            elif not done_audio and resampler is not None:
                for aframe in packet.decode():
                    if not isinstance(aframe, av.AudioFrame):
                        continue
                    if audio_t0 is None:
                        audio_t0 = float(aframe.time) if aframe.time is not None else 0.0
                    for out in resampler.resample(aframe):
                        chunk = out.to_ndarray()  # (C, n) float32 planar
                        audio_in_rate = int(out.sample_rate)
                        audio_parts.append(chunk.mean(0))
                        audio_samples += chunk.shape[1]
                if (
                    clip_end is not None
                    and audio_t0 is not None
                    and t0 is not None
                    and audio_t0 - t0 + audio_samples / max(audio_in_rate, 1) >= clip_end
                ):
                    done_audio = True

        if n_decoded == 0:
            raise _error(
                "video",
                path,
                where,
                "no video frame could be decoded (empty or truncated file)",
                "re-download or re-encode the file",
            )
        if fps is not None and not done_video and prev is not None:
            # The stream ended: fill the remaining targets before its end with the last frame.
            step = 1 / native_fps if native_fps else 1 / fps
            end = prev_t + step
            while k / fps < end - 1e-9 and (max_frames is None or len(frames) < max_frames):
                frames.append(_rgb_frame(prev, hw))
                times.append(k / fps)
                k += 1
            if max_frames is not None and len(frames) >= max_frames:
                clip_end = times[-1] + 1 / fps
        if resampler is not None:
            for out in resampler.resample(None):
                chunk = out.to_ndarray()
                audio_parts.append(chunk.mean(0))

    out_fps = float(fps) if fps is not None else (native_fps or 0.0)
    audio: Tensor | None = None
    if astream is not None and arate is not None and audio_parts and audio_in_rate > 0:
        wave = np.concatenate(audio_parts).astype(np.float32)
        offset = round(((audio_t0 or 0.0) - (t0 or 0.0)) * audio_in_rate)
        if offset > 0:
            wave = np.concatenate([np.zeros(offset, np.float32), wave])
        elif offset < 0:
            wave = wave[-offset:]
        if clip_end is not None:
            wave = wave[: math.ceil(clip_end * audio_in_rate)]
        audio = resample_audio(torch.from_numpy(np.ascontiguousarray(wave)), audio_in_rate, arate)
    stacked = torch.stack(frames) if frames else torch.zeros(0, 3, *(hw or (0, 0)))
    return VideoClip(
        frames=stacked,  # (T, 3, H, W)
        timestamps=torch.tensor(times, dtype=torch.float64),
        fps=out_fps,
        audio=audio,
        audio_rate=arate if audio is not None else None,
    )


# --------------------------------------------------------------------------------------
# Time series
# --------------------------------------------------------------------------------------


@dataclass
class TimeSeries:
    """A multichannel time series read from a table.

    Attributes:
        values: (T, C) float32.
        timestamps: (T,) float64 seconds (as in the file, converted from ``time_unit``).
        columns: the C channel names, in the order of ``values``' columns.
    """

    values: Tensor
    timestamps: Tensor
    columns: list[str]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _unknown_column(
    path: PathLike, where: str, name: str, header: list[str], param: str
) -> DecodeError:
    close = difflib.get_close_matches(name, header, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return DecodeError(
        f"Cannot decode time series {_loc(path, where)}: no column {name!r} (from '{param}'). "
        f"Available columns: {', '.join(header)}.{hint}",
        path=path,
        where=where,
    )


def decode_timeseries(
    path: PathLike,
    columns: Sequence[str] | None = None,
    timestamp_column: str | None = "timestamp",
    time_unit: str = "ms",
    sample_rate: float | None = None,
    *,
    where: str = "",
) -> TimeSeries:
    """Read a CSV table (one header row, one row per step) into a :class:`TimeSeries`.

    Rules: a column is numeric when its first non-empty cell parses as a number; with
    ``columns=None`` every numeric column except the timestamp is a channel (so a ``label``
    column is skipped).  Every cell of a selected column must be a finite number.  Timestamps
    must be non-decreasing: equal consecutive timestamps (sensor jitter, common in
    phone/watch logs) are kept, a step backwards is an error (sort the file first).

    Args:
        path: the CSV file.
        columns: channel names in the wanted order; ``None`` for every numeric column.
        timestamp_column: the time column; ``None`` when the file has none, and then
            ``sample_rate`` gives ``timestamps = arange(T) / sample_rate``.
        time_unit: unit of the time column: ``"s"``, ``"ms"``, ``"us"`` or ``"ns"``.
        sample_rate: rows per second, used only when ``timestamp_column`` is ``None``.
        where: context for error messages.

    Returns:
        A :class:`TimeSeries` with (T, C) float32 values and (T,) float64 seconds.
    """
    if time_unit not in _TIME_UNITS:
        raise unknown_name_error("time_unit", time_unit, list(_TIME_UNITS))
    if columns is not None and (isinstance(columns, str) or not isinstance(columns, Sequence)):
        raise TypeError(
            f"The 'columns' parameter must be a list of column names or None; got {columns!r}."
        )
    if timestamp_column is None:
        if sample_rate is None:
            raise ValueError(
                "decode_timeseries needs timestamps: pass timestamp_column=NAME, or "
                "timestamp_column=None together with sample_rate=HZ; got neither."
            )
        if not (
            isinstance(sample_rate, int | float) and math.isfinite(sample_rate) and sample_rate > 0
        ):
            raise ValueError(
                f"The 'sample_rate' parameter must be a positive number; got {sample_rate!r}."
            )
    p = _check_file(path, where)

    def fail(problem: str, fix: str) -> DecodeError:
        return _error("time series", path, where, problem, fix)

    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                rows.append(row)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as e:
        raise fail(f"it is not a readable UTF-8 CSV file ({e})", "save it as UTF-8 CSV") from e
    if header is None:
        raise fail("the file is empty", "write a header row and one row per time step")
    header = [h.strip() for h in header]
    if not rows:
        raise fail("the file has a header but no data rows", "add one row per time step")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise fail(
                f"line {line} has {len(row)} cells but the header has {len(header)}",
                "give every row one cell per header column",
            )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise fail(f"duplicate column names {dupes}", "rename the columns so each is unique")

    col_index = {h: j for j, h in enumerate(header)}
    if timestamp_column is not None and timestamp_column not in col_index:
        raise _unknown_column(path, where, timestamp_column, header, "timestamp_column")

    def first_value(j: int) -> str:
        for row in rows:
            if row[j].strip():
                return row[j]
        return ""

    if columns is None:
        names = [
            h for j, h in enumerate(header) if h != timestamp_column and _is_number(first_value(j))
        ]
        if not names:
            raise fail(
                f"no numeric column besides the timestamp (columns: {', '.join(header)})",
                "check the delimiter (a comma is expected) and the file's contents",
            )
    else:
        names = [str(c) for c in columns]
        if not names:
            raise ValueError("The 'columns' parameter is empty; pass None for every numeric one.")
        for name in names:
            if name not in col_index:
                raise _unknown_column(path, where, name, header, "columns")

    def numeric(name: str) -> np.ndarray:
        j = col_index[name]
        cells = [row[j] for row in rows]
        try:
            arr = np.array(cells, dtype=np.float64)
        except ValueError:
            for i, cell in enumerate(cells):
                if not _is_number(cell):
                    shown = repr(cell) if cell.strip() else "an empty cell"
                    raise fail(
                        f"row {i + 1} (line {lines[i]}), column {name!r} holds {shown}, "
                        "not a number",
                        f"fill in a number, or leave {name!r} out of 'columns'",
                    ) from None
            raise  # pragma: no cover - numpy and float() disagree
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            raise fail(
                f"row {i + 1} (line {lines[i]}), column {name!r} holds {cells[i].strip()!r} "
                f"({bad.size} non-finite cell(s) in this column)",
                "fill in or interpolate the missing values before decoding",
            )
        return arr

    values = np.stack([numeric(n) for n in names], axis=1).astype(np.float32)  # (T, C)
    if timestamp_column is not None:
        ts = numeric(timestamp_column) / _TIME_UNITS[time_unit]
        back = np.flatnonzero(np.diff(ts) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise fail(
                f"timestamps go backwards at row {i + 1} (line {lines[i]}): "
                f"{rows[i][col_index[timestamp_column]].strip()} after "
                f"{rows[i - 1][col_index[timestamp_column]].strip()}",
                f"sort the rows by {timestamp_column!r} (equal timestamps are allowed)",
            )
    else:
        ts = np.arange(len(rows), dtype=np.float64) / float(sample_rate or 1.0)
    return TimeSeries(
        values=torch.from_numpy(values),
        timestamps=torch.from_numpy(ts.astype(np.float64)),
        columns=names,
    )


# --------------------------------------------------------------------------------------
# Text and features
# --------------------------------------------------------------------------------------


def decode_text(value: object, *, where: str = "") -> str:
    """A text cell -> the stripped string.

    Raises:
        DecodeError: ``value`` is ``None``, not a ``str`` (e.g. a NaN from a spreadsheet), or
            empty/whitespace only.
    """
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is None or isinstance(value, str) or (isinstance(value, float) and value != value):
        got = "None" if value is None else ("NaN" if not isinstance(value, str) else repr(value))
        problem = f"empty text (got {got})"
    else:
        problem = f"empty text: expected a str, got {type(value).__name__} {value!r}"
    raise DecodeError(
        f"Cannot decode text{_at(where)}: {problem}. Fix: fill it in, or leave the cell empty "
        "in a manifest to mark the modality missing for this example.",
        where=where,
    )


_FEATURE_EXTS = (".npy", ".npz", ".pt", ".pth", ".csv", ".txt")


def decode_features(
    source: PathLike | Sequence[float] | np.ndarray | Tensor, *, where: str = ""
) -> Tensor:
    """A feature vector (D,) or sequence (T, D) from a file or a value.

    Args:
        source: a ``.npy`` file, a ``.npz`` file holding one array, a ``.pt``/``.pth`` file
            holding one tensor (loaded with ``weights_only=True``), a ``.csv`` (comma) or
            ``.txt`` (whitespace) table of numbers; or a list/array/tensor of numbers; or a
            JSON string such as ``"[1, 2.5]"`` (a manifest cell).
        where: context for error messages.

    Returns:
        (D,) or (T, D) float32.

    Raises:
        DecodeError: unreadable file, non-numeric values, NaN/inf, empty, or not 1-D/2-D.
    """
    path: PathLike | None = None
    if isinstance(source, str) and source.lstrip().startswith("["):
        try:
            arr = np.asarray(json.loads(source), dtype=np.float64)
        except (json.JSONDecodeError, ValueError, TypeError) as e:
            raise _error(
                "features",
                None,
                where,
                f"the string {_short(source)} is not a JSON list of numbers ({e})",
                "write it as [1.0, 2.5, ...] (or [[...], [...]] for a sequence)",
            ) from e
    elif isinstance(source, str | os.PathLike):
        path = source
        arr = _load_feature_file(_check_file(source, where), source, where)
    elif isinstance(source, Tensor):
        arr = source.detach().cpu().numpy()
    elif isinstance(source, np.ndarray | Sequence):
        try:
            arr = np.asarray(source, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise _error(
                "features",
                None,
                where,
                f"the values are not a rectangular list of numbers ({e})",
                "pass a flat list of numbers, or a list of equal-length lists",
            ) from e
    else:
        raise TypeError(
            f"decode_features expects a path, a JSON string, a list or an array{_at(where)}; "
            f"got {type(source).__name__}."
        )
    return _check_features(arr, path, where)


def _short(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


def _load_feature_file(p: Path, path: PathLike, where: str) -> np.ndarray:
    ext = p.suffix.lower()
    if ext not in _FEATURE_EXTS:
        raise _error(
            "features",
            path,
            where,
            f"unsupported extension {ext!r}",
            f"save the features as one of {', '.join(_FEATURE_EXTS)}",
        )
    try:
        if ext == ".npy":
            return np.load(p, allow_pickle=False)
        if ext == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if len(keys) != 1:
                    raise _error(
                        "features",
                        path,
                        where,
                        f"the .npz holds {len(keys)} arrays {keys}, expected exactly one",
                        "save one array per file (np.save or np.savez)",
                    )
                return z[keys[0]]
        if ext in (".pt", ".pth"):
            obj = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(obj, Tensor):
                raise _error(
                    "features",
                    path,
                    where,
                    f"the file holds a {type(obj).__name__}, expected a tensor",
                    "save the tensor itself: torch.save(tensor, path)",
                )
            return obj.detach().to(torch.float64).numpy()
        delimiter = "," if ext == ".csv" else None
        return np.loadtxt(p, delimiter=delimiter, dtype=np.float64, ndmin=1)
    except DecodeError:
        raise
    except Exception as e:  # numpy/torch raise many types for damaged files
        raise _error(
            "features",
            path,
            where,
            f"cannot read it ({type(e).__name__}: {e})",
            "re-save the features; CSV/TXT must hold only numbers (no header)",
        ) from e


def _check_features(arr: np.ndarray, path: PathLike | None, where: str) -> Tensor:
    if (
        arr.dtype == object
        or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_)
        or np.iscomplexobj(arr)
    ):
        raise _error(
            "features",
            path,
            where,
            f"expected real numbers, got dtype {arr.dtype}",
            "store numeric (float or int) features",
        )
    if arr.ndim not in (1, 2):
        raise _error(
            "features",
            path,
            where,
            f"expected shape (D,) or (T, D), got {arr.shape}",
            "flatten or pool the features to one vector, or one vector per step",
        )
    if arr.size == 0:
        raise _error(
            "features",
            path,
            where,
            f"the features are empty (shape {arr.shape})",
            "fill them in, or mark the modality missing for this example",
        )
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _error(
            "features",
            path,
            where,
            f"{int(bad.sum())} NaN/inf value(s), the first at index {first}",
            "impute or drop the missing values before decoding",
        )
    return torch.from_numpy(np.ascontiguousarray(arr))


# --------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------

Decoded = str | Tensor | VideoClip | TimeSeries
"""What :func:`decode_file` returns (see its docstring for which kind gives which)."""


def kind_from_extension(path: PathLike) -> ModalityKind | None:
    """The :data:`EXTENSIONS` kind of ``path``'s extension (case-insensitive), or ``None``.

    ``.csv`` maps to ``timeseries``; ``.txt`` and unknown extensions give ``None``.
    """
    return _KIND_BY_EXT.get(Path(os.fspath(path)).suffix.lower())


def _spec_hw(spec: ModalitySpec, kind: ModalityKind) -> tuple[tuple[int, int] | None, bool]:
    """(H, W) and grayscale from a (C, H, W) spec shape."""
    if spec.shape is None:
        return None, False
    if len(spec.shape) != 3 or spec.shape[0] not in (1, 3):
        raise ValueError(
            f"ModalitySpec {spec.name!r} ({kind.value}) has shape {spec.shape}; expected "
            "(3, H, W) or (1, H, W) for decoding, or None to keep the file's size."
        )
    return (spec.shape[1], spec.shape[2]), spec.shape[0] == 1


def decode_file(
    path: PathLike,
    kind: ModalityKind | str,
    spec: ModalitySpec | None = None,
    *,
    where: str = "",
) -> Decoded:
    """Decode ``path`` as a modality of ``kind``, with sizes and rates from ``spec``.

    ==========  ===================================================  ===============
    kind        what ``spec`` sets                                   returns
    ==========  ===================================================  ===============
    text        (file read as UTF-8)                                 ``str``
    image       ``shape`` (3|1, H, W) -> resize to (H, W)            (3, H, W) Tensor
    audio       ``sample_rate`` -> resample                          (T,) Tensor
    video       ``sample_rate`` -> fps, ``shape`` -> frame size      :class:`VideoClip`
    timeseries  ``sample_rate`` when the file has no ``timestamp``   :class:`TimeSeries`
                column; ``shape`` (C,) is checked
    features    ``shape`` is checked against the last dim            (D,)/(T, D) Tensor
    tabular     as features, must be 1-D                             (D,) Tensor
    ==========  ===================================================  ===============
    """
    kind = ModalityKind.parse(kind)
    if spec is not None and spec.kind is not kind:
        raise ValueError(
            f"decode_file got kind={kind.value!r} but spec {spec.name!r} has kind "
            f"{spec.kind.value!r}; pass the spec's kind."
        )
    if kind is ModalityKind.TEXT:
        p = _check_file(path, where)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise _error("text", path, where, f"it is not UTF-8 ({e})", "save it as UTF-8") from e
        return decode_text(
            text, where=f"file '{os.fspath(path)}'" + (f", {where}" if where else "")
        )
    if kind is ModalityKind.IMAGE:
        hw, gray = _spec_hw(spec, kind) if spec is not None else (None, False)
        return decode_image(path, size=hw, grayscale=gray, where=where)
    if kind is ModalityKind.AUDIO:
        rate = spec.sample_rate if spec is not None else None
        return decode_audio(
            path,
            sample_rate=None if rate is None else _check_rate(rate, "spec.sample_rate"),
            where=where,
        )
    if kind is ModalityKind.VIDEO:
        hw = _spec_hw(spec, kind)[0] if spec is not None else None
        fps = spec.sample_rate if spec is not None else None
        return decode_video(path, fps=fps, size=hw, where=where)
    if kind is ModalityKind.TIMESERIES:
        return _decode_timeseries_for_spec(path, spec, where)
    # features / tabular
    feats = decode_features(path, where=where)
    if kind is ModalityKind.TABULAR and feats.dim() != 1:
        raise _error(
            "tabular row",
            path,
            where,
            f"expected one vector (D,), got shape {tuple(feats.shape)}",
            "use kind 'features' with sequence=True for (T, D) data",
        )
    if spec is not None and spec.shape is not None and tuple(feats.shape[-1:]) != spec.shape:
        raise _error(
            kind.value,
            path,
            where,
            f"expected {spec.shape[0] if spec.shape else '?'} "
            f"features (spec {spec.name!r} shape {spec.shape}), got shape {tuple(feats.shape)}",
            "re-extract the features or fix the spec's shape",
        )
    return feats


def _decode_timeseries_for_spec(
    path: PathLike, spec: ModalitySpec | None, where: str
) -> TimeSeries:
    p = _check_file(path, where)
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
    except (UnicodeDecodeError, csv.Error) as e:
        raise _error(
            "time series", path, where, f"cannot read its header ({e})", "save it as UTF-8 CSV"
        ) from e
    rate = spec.sample_rate if spec is not None else None
    if "timestamp" in header:
        ts = decode_timeseries(path, where=where)
    elif rate is not None:
        ts = decode_timeseries(path, timestamp_column=None, sample_rate=rate, where=where)
    else:
        raise _error(
            "time series",
            path,
            where,
            f"it has no 'timestamp' column (columns: {', '.join(header)}) and no sample rate "
            "is known",
            "add a 'timestamp' column (milliseconds) or set the spec's sample_rate",
        )
    if spec is not None and spec.shape is not None and (ts.values.shape[1],) != spec.shape:
        raise _error(
            "time series",
            path,
            where,
            f"it has {ts.values.shape[1]} numeric channels "
            f"{ts.columns} but spec {spec.name!r} expects shape {spec.shape}",
            "fix the spec's shape or the file's columns",
        )
    return ts


def _wav_missing_bytes(path: Path) -> int:
    """Bytes of sample data a RIFF/WAVE header declares beyond the end of the file (0 if none).

    libsndfile silently clamps a truncated WAV to what is on disk, so a file cut in its data
    chunk would otherwise decode as a shorter, valid recording.
    """
    if path.suffix.lower() != ".wav":
        return 0
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return 0
            cid, clen = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"data":
                if clen in (0, 0xFFFFFFFF):  # streamed WAV: size unknown
                    return 0
                return max(0, pos + 8 + clen - size)
            pos += 8 + clen + (clen & 1)
    return 0
