"""Video files: :class:`VideoClip` and :func:`decode_video` (PyAV), frames sampled by time."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.data.decode.errors import PathLike, _check_file, _error
from polymodal.data.decode.image import Size, _check_pixels, _parse_size, _resize
from polymodal.data.decode.limits import get_limits, limit_error
from polymodal.data.decode.resample import _check_rate, resample_audio


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

    Bounded (:mod:`~polymodal.data.decode.limits`): before decoding, the frame size from the
    stream header is checked against ``max_image_pixels``, the duration to read (the
    container's, or ``max_frames`` frames when fewer) against ``max_video_seconds``, and the
    frames it would return against ``max_video_bytes``; while decoding, the same limits
    (and ``max_audio_seconds`` for the audio track) stop a file whose header understates it.

    Returns:
        A :class:`VideoClip`.

    Raises:
        LimitError: over one of the limits above.
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


def _media_seconds(container: Any, stream: Any) -> float | None:
    """The duration a container's header declares for ``stream`` (or the file), or ``None``."""
    if stream is not None and stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # in AV_TIME_BASE units
    return None


def _too_long(
    path: PathLike, where: str, seconds: float, kind: str = "video", from_header: bool = True
) -> Exception:
    """A :class:`LimitError` for ``max_video_seconds`` (or ``max_audio_seconds``)."""
    limit = "max_audio_seconds" if kind == "audio" else "max_video_seconds"
    found = (
        f"it lasts {seconds:,.1f} s (read from its header; nothing was decoded)"
        if from_header
        else f"its {kind} runs past {seconds:,.1f} s (its header did not say so; decoding "
        "stopped there)"
    )
    return limit_error(
        kind,
        path,
        where,
        found,
        limit,
        float(math.ceil(seconds if from_header else 2 * seconds)),
        "cut it into shorter files (e.g. `ffmpeg -i IN -f segment -segment_time 600 -c copy "
        "OUT%03d.mp4`)" + (", or pass max_frames=" if kind == "video" else ""),
    )


def _too_big(path: PathLike, where: str, frames: int, shape: tuple[int, ...]) -> Exception:
    """A :class:`LimitError` for ``max_video_bytes``: ``frames`` float32 frames of ``shape``."""
    nbytes = frames * math.prod(shape) * 4
    return limit_error(
        "video",
        path,
        where,
        f"its {frames:,} frames of {' x '.join(map(str, shape))} float32 would take "
        f"{nbytes:,} bytes ({nbytes / 2**30:.1f} GiB)",
        "max_video_bytes",
        nbytes,
        "sample fewer frames (fps=, max_frames=) or smaller ones (size=), or read it in "
        "chunks with polymodal.data.decode.iter_video_frames",
    )


def _check_video_header(
    container: Any,
    vstream: Any,
    path: PathLike,
    where: str,
    rate: float | None,
    max_frames: int | None = None,
    hw: tuple[int, int] | None = None,
    bytes_bounded: bool = False,
) -> None:
    """Frame size, duration and (with ``bytes_bounded``) decoded bytes, from the header."""
    lim = get_limits()
    codec = getattr(vstream, "codec_context", None)
    if codec is None:
        raise _error(
            "video",
            path,
            where,
            "its video stream has no decoder (the header is damaged or the codec unknown)",
            "re-encode or re-download the file (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)",
        )
    width = int(codec.width or 0)
    height = int(codec.height or 0)
    _check_pixels(width, height, path, where, "video")
    seconds = _media_seconds(container, vstream)
    if seconds is None:
        return
    if max_frames is not None and rate:
        seconds = min(seconds, max_frames / rate)
    if seconds > lim.max_video_seconds:
        raise _too_long(path, where, seconds)
    if bytes_bounded and rate and width and height:
        frames = math.ceil(seconds * rate - 1e-6)
        shape = (3, *(hw or (height, width)))
        if frames * math.prod(shape) * 4 > lim.max_video_bytes:
            raise _too_big(path, where, frames, shape)


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
        lim = get_limits()
        _check_video_header(
            container, vstream, path, where, fps or native_fps, max_frames, hw, bytes_bounded=True
        )

        frames: list[Tensor] = []
        times: list[float] = []

        def keep(x: Tensor, at: float) -> None:  # x: (3, H, W)
            if (len(frames) + 1) * x.numel() * 4 > lim.max_video_bytes:
                raise _too_big(path, where, len(frames) + 1, tuple(x.shape))
            frames.append(x)
            times.append(at)

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
                    if t > lim.max_video_seconds:
                        raise _too_long(path, where, lim.max_video_seconds, from_header=False)
                    if fps is None:
                        keep(_rgb_frame(frame, hw), t)
                    else:
                        # Targets strictly before this frame belong to the previous one.
                        while prev is not None and k / fps < t - 1e-9:
                            keep(_rgb_frame(prev, hw), k / fps)
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
                        if audio_samples > lim.max_audio_seconds * audio_in_rate:
                            raise _too_long(
                                path, where, lim.max_audio_seconds, "audio", from_header=False
                            )
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
                keep(_rgb_frame(prev, hw), k / fps)
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
