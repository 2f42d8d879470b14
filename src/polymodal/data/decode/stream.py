"""Long media, read without holding it whole: video frames in chunks, the audio track alone.

:func:`~polymodal.data.decode.video.decode_video` returns every sampled frame at once, which is
right for a clip and wrong for a ten-minute interview (3,000 frames at 5 fps are several GB as
float32).  :func:`iter_video_frames` yields the same frames, sampled by the same rule (target
times ``k / fps``, each taking the latest frame at or before it), ``chunk`` at a time; and
:func:`decode_audio_track` demuxes only the audio stream of any container FFmpeg reads (an
audio-only file included), mono, resampled.

Both are bounded (:mod:`~polymodal.data.decode.limits`): the frame size and the duration are
checked from the container header before decoding (``max_image_pixels``,
``max_video_seconds``, ``max_audio_seconds``), and again while decoding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.data.decode.errors import PathLike, _check_file, _error
from polymodal.data.decode.image import Size, _parse_size
from polymodal.data.decode.limits import get_limits
from polymodal.data.decode.resample import _check_rate, resample_audio
from polymodal.data.decode.video import (
    _check_video_header,
    _frame_time,
    _media_seconds,
    _rgb_frame,
    _too_long,
)


def _open(path: PathLike, where: str) -> Any:
    import av

    p = _check_file(path, where)
    try:
        return av.open(os.fspath(p))
    except av.error.FFmpegError as e:
        raise _error(
            "media",
            path,
            where,
            f"FFmpeg cannot open it ({e})",
            "check that the file is a complete audio or video file; re-encode it with ffmpeg",
        ) from e


def has_video_stream(path: PathLike, *, where: str = "") -> bool:
    """Whether FFmpeg finds a video stream in ``path`` (False for audio-only files)."""
    with _open(path, where) as container:
        return bool(container.streams.video)


def iter_video_frames(
    path: PathLike, fps: float, size: Size | None = None, chunk: int = 64, *, where: str = ""
) -> Iterator[tuple[Tensor, Tensor]]:
    """Frames sampled at ``fps``, ``chunk`` at a time.

    Yields:
        ``(frames, times)``: (n, 3, H, W) float32 in [0, 1] and (n,) float64 seconds from
        the first frame; n <= ``chunk``, the last chunk may be shorter.

    Raises:
        LimitError: frames over ``max_image_pixels`` or a file over ``max_video_seconds``.
        DecodeError: no video stream, FFmpeg fails or reports damaged data (a cut file
            decodes some frames first, then this is raised), or no frame decodes.
    """
    import av.logging

    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"The 'fps' parameter must be a positive number; got {fps!r}.")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"The 'chunk' parameter must be a positive int; got {chunk!r}.")
    hw = _parse_size(size)
    prev_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(True) as logs:
            yield from _frames(path, fps, hw, chunk, where)
    finally:
        av.logging.set_level(prev_level)
    errors = [msg.strip() for level, _, msg in logs if level <= av.logging.ERROR]
    if errors:
        raise _error(
            "video",
            path,
            where,
            f"FFmpeg reported damaged data ({'; '.join(errors[:3])}); the file is probably "
            "cut or corrupt",
            "re-download or re-encode the file, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`",
        )


def _frames(
    path: PathLike, fps: float, hw: tuple[int, int] | None, chunk: int, where: str
) -> Iterator[tuple[Tensor, Tensor]]:
    import av

    frames: list[Tensor] = []
    times: list[float] = []

    def flush() -> tuple[Tensor, Tensor]:
        out = (torch.stack(frames), torch.tensor(times, dtype=torch.float64))
        frames.clear()
        times.clear()
        return out

    with _open(path, where) as container:
        if not container.streams.video:
            raise _error("video", path, where, "the file has no video stream", "decode it as audio")
        stream = container.streams.video[0]
        native = stream.average_rate or stream.guessed_rate
        native_fps = float(native) if native else None
        _check_video_header(container, stream, path, where, fps)
        max_seconds = get_limits().max_video_seconds
        t0: float | None = None
        prev: Any = None
        prev_t = 0.0
        n = 0
        k = 0
        try:
            for frame in container.decode(stream):
                t = _frame_time(frame, n, native_fps)
                n += 1
                t0 = t if t0 is None else t0
                t -= t0
                if t > max_seconds:
                    raise _too_long(path, where, max_seconds, from_header=False)
                while prev is not None and k / fps < t - 1e-9:
                    frames.append(_rgb_frame(prev, hw))
                    times.append(k / fps)
                    k += 1
                    if len(frames) >= chunk:
                        yield flush()
                prev, prev_t = frame, t
        except av.error.FFmpegError as e:
            raise _error(
                "video",
                path,
                where,
                f"FFmpeg failed after {n} frame(s) ({e}); the file is probably cut or corrupt",
                "re-download or re-encode the file, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`",
            ) from e
        if prev is None:
            raise _error(
                "video", path, where, "no video frame could be decoded", "re-encode the file"
            )
        end = prev_t + (1 / native_fps if native_fps else 1 / fps)
        while k / fps < end - 1e-9:
            frames.append(_rgb_frame(prev, hw))
            times.append(k / fps)
            k += 1
            if len(frames) >= chunk:
                yield flush()
    if frames:
        yield flush()


def decode_audio_track(path: PathLike, sample_rate: int, *, where: str = "") -> Tensor | None:
    """The first audio stream of any media file, mono, resampled to ``sample_rate``.

    Returns:
        (S,) float32, or ``None`` when the file has no audio stream.

    Raises:
        LimitError: the track is longer than ``max_audio_seconds``.
        DecodeError: FFmpeg cannot open or decode the file.
    """
    import av

    rate = _check_rate(sample_rate, "sample_rate")
    parts: list[np.ndarray] = []
    in_rate = 0
    n_samples = 0
    max_seconds = get_limits().max_audio_seconds
    with _open(path, where) as container:
        if not container.streams.audio:
            return None
        astream = container.streams.audio[0]
        seconds = _media_seconds(container, astream)
        if seconds is not None and seconds > max_seconds:
            raise _too_long(path, where, seconds, "audio")
        resampler = av.AudioResampler(format="fltp")
        try:
            for aframe in container.decode(astream):
                for out in resampler.resample(aframe):
                    parts.append(out.to_ndarray().mean(0))
                    in_rate = int(out.sample_rate)
                    n_samples += parts[-1].shape[0]
                    if n_samples > max_seconds * in_rate:
                        raise _too_long(path, where, max_seconds, "audio", from_header=False)
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().mean(0))
        except av.error.FFmpegError as e:
            raise _error(
                "audio",
                path,
                where,
                f"FFmpeg failed decoding the audio track ({e})",
                "re-download or re-encode the file",
            ) from e
    if not parts or in_rate <= 0:
        return None
    wave = torch.from_numpy(np.ascontiguousarray(np.concatenate(parts), dtype=np.float32))
    return resample_audio(wave, in_rate, rate)


__all__ = ["decode_audio_track", "has_video_stream", "iter_video_frames"]
