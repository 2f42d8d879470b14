"""Audio files: :func:`decode_audio` (soundfile) and the truncated-WAV check it relies on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polymodal.data.decode.errors import PathLike, _check_file, _error
from polymodal.data.decode.limits import get_limits, limit_error
from polymodal.data.decode.resample import _check_rate, resample_audio

#: Float audio may overshoot the [-1, 1] full scale (lossy codecs, resampling); beyond this
#: it is damaged or stored in other units.
MAX_FLOAT_PEAK = 2.0


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

    Bounded: the duration to read (the header's, or ``max_seconds`` when shorter) is
    checked against ``max_audio_seconds`` (:mod:`~polymodal.data.decode.limits`) before
    any sample is read, and no more than that is ever read.

    Returns:
        (T,) float32 with ``mono`` (else (C, T)).  Integer PCM is scaled to [-1, 1); float
        files are returned as stored, and lossy codecs and resampling may overshoot +-1
        slightly at full-scale transients (nothing is clipped); a float file with samples
        beyond +-2 (:data:`MAX_FLOAT_PEAK`) is refused as damaged or not normalised.

    Raises:
        LimitError: longer than ``max_audio_seconds``.
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
    limit = get_limits().max_audio_seconds
    try:
        with sf.SoundFile(p) as f:
            rate = int(f.samplerate)
            wanted = int(f.frames)  # from the header
            if max_seconds is not None:
                wanted = min(wanted, max(1, round(max_seconds * rate)))
            allowed = math.floor(limit * rate)
            if wanted > allowed:
                raise _too_long(path, where, wanted / rate)
            data = f.read(frames=wanted, dtype="float32", always_2d=True)  # (T, C)
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
    peak = float(np.abs(data).max())
    if peak > MAX_FLOAT_PEAK:
        raise _error(
            "audio",
            path,
            where,
            f"its samples reach {peak:.4g}, beyond the +-{MAX_FLOAT_PEAK:g} a float file may "
            "overshoot the [-1, 1] full scale (it is damaged, or stored unnormalised)",
            "re-export it normalised to [-1, 1] (e.g. sox IN OUT gain -n), or as 16-bit PCM",
        )
    wave = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, T)
    if mono:
        wave = wave.mean(0)  # (T,)
    if target_rate is not None and target_rate != rate:
        wave = resample_audio(wave, rate, target_rate)
    return wave.contiguous()


def _too_long(path: PathLike, where: str, seconds: float) -> Exception:
    return limit_error(
        "audio",
        path,
        where,
        f"it lasts {seconds:,.1f} s (read from its header; nothing was decoded)",
        "max_audio_seconds",
        float(math.ceil(seconds)),
        "cut it into shorter files (e.g. `ffmpeg -i IN -f segment -segment_time 600 "
        "OUT%03d.wav`), or read only its start (decode_audio(..., max_seconds=600))",
    )


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
