"""How much one decode may read: :class:`DecodeLimits`, and where they are set.

Every decoder checks its limit *before* it reads what the limit bounds, from the file's
header or size where it can (an image's dimensions, an audio or video container's duration, a
table's size in bytes), and again while it reads where a header may lie (rows, frames,
samples), so a 12 KB PNG that claims 100,000 x 100,000 pixels, a CSV that names
``/dev/zero`` or a ten-hour recording is refused with a :class:`LimitError` instead of
filling memory.

========================= ============== ==============================================
limit                     default        bounds
========================= ============== ==============================================
``max_image_pixels``      50,000,000     pixels (H x W) of one image or video frame, read
                                         from the header before decoding
``max_audio_seconds``     3600           seconds of one audio file or audio track
``max_video_seconds``     3600           seconds of one video file
``max_video_bytes``       2 GiB          float32 frames one :func:`decode_video` returns
``max_timeseries_bytes``  256 MiB        size of one time-series CSV file
``max_timeseries_rows``   1,000,000      rows of one time-series CSV file
``max_text_chars``        1,000,000      characters of one text cell or text file
``max_feature_bytes``     1 GiB          size of one feature file (``.npz``: unpacked)
``inferred_image_side``   224            a manifest without a schema resizes every image
                                         (and video frame) to its first one's size,
                                         scaled *down* so that its longer side is at
                                         most this; never up
========================= ============== ==============================================

Change them in one of three ways (a later one wins):

- the environment, for every process (the CLI, data-loader workers)::

      POLYMODAL_LIMITS="max_image_pixels=200000000,max_audio_seconds=7200"

- for the rest of the process: ``set_limits(max_image_pixels=200_000_000)``;
- for a block: ``with override_limits(max_text_chars=10_000): ...``.

Special files (devices such as ``/dev/zero``, FIFOs, sockets) and directories are refused
before they are opened, whatever the limits (:func:`~polymodal.data.decode.errors._check_file`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.config import Config, param, parse_override
from polymodal.data.decode.errors import LimitError, PathLike, _loc

ENV_VAR = "POLYMODAL_LIMITS"


@dataclass(frozen=True, kw_only=True)
class DecodeLimits(Config):
    """The bounds every decoder checks (see the module for what each bounds).

    Args:
        max_image_pixels: pixels (H x W) of one image or video frame.
        max_audio_seconds: seconds of one audio file or audio track.
        max_video_seconds: seconds of one video file.
        max_video_bytes: bytes of the float32 frames one ``decode_video`` call returns.
        max_timeseries_bytes: bytes of one time-series CSV file.
        max_timeseries_rows: data rows of one time-series CSV file.
        max_text_chars: characters of one text cell or text file.
        max_feature_bytes: bytes of one feature file (an ``.npz``'s array: unpacked).
        inferred_image_side: the longest side of the image size a manifest without a
            schema infers from its first image.
    """

    max_image_pixels: int = param(50_000_000, ge=1)
    max_audio_seconds: float = param(3600.0, gt=0)
    max_video_seconds: float = param(3600.0, gt=0)
    max_video_bytes: int = param(2 * 1024**3, ge=1)
    max_timeseries_bytes: int = param(256 * 1024**2, ge=1)
    max_timeseries_rows: int = param(1_000_000, ge=1)
    max_text_chars: int = param(1_000_000, ge=1)
    max_feature_bytes: int = param(1024**3, ge=1)
    inferred_image_side: int = param(224, ge=1)


_set: DecodeLimits | None = None  # set_limits / override_limits; None: defaults + env
_from_env: tuple[str, DecodeLimits] | None = None  # the last parsed POLYMODAL_LIMITS


def _parse_env(text: str) -> DecodeLimits:
    values: dict[str, Any] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            key, value = parse_override(item)
        except ValueError as e:
            raise ValueError(f"{ENV_VAR}={text!r}: {e}") from None
        values[key] = value
    try:
        return DecodeLimits.from_dict(values)
    except ValueError as e:
        raise ValueError(
            f"{ENV_VAR}={text!r}: {e} Write it as comma-separated key=value pairs, e.g. "
            f"{ENV_VAR}=max_image_pixels=200000000,max_audio_seconds=7200."
        ) from None


def get_limits() -> DecodeLimits:
    """The limits in force: :func:`set_limits`'s, else the defaults with ``$POLYMODAL_LIMITS``.

    Raises:
        ValueError: ``$POLYMODAL_LIMITS`` names an unknown limit or a bad value.
    """
    global _from_env
    if _set is not None:
        return _set
    text = os.environ.get(ENV_VAR, "")
    if _from_env is None or _from_env[0] != text:
        _from_env = (text, _parse_env(text))
    return _from_env[1]


def set_limits(**changes: Any) -> DecodeLimits:
    """Change limits for the rest of the process; returns the limits in force before.

    ``set_limits(max_image_pixels=200_000_000)``; an unknown name or a bad value raises a
    ``ValueError`` naming it.  Pass the returned object's fields back to restore, or use
    :func:`override_limits` for a block.
    """
    global _set
    before = get_limits()
    _set = before.replace(**changes)
    return before


@contextlib.contextmanager
def override_limits(**changes: Any) -> Iterator[DecodeLimits]:
    """Within the ``with`` block, decode under ``changes`` (e.g. ``max_text_chars=10_000``)."""
    global _set
    saved = _set
    _set = get_limits().replace(**changes)
    try:
        yield _set
    finally:
        _set = saved


def _how_to_raise(limit: str, value: int | float) -> str:
    shown = f"{value:_}" if isinstance(value, int) else f"{value:g}"
    plain = f"{value}" if isinstance(value, int) else f"{value:g}"
    return (
        f"raise the limit: polymodal.data.decode.set_limits({limit}={shown}) in Python, or "
        f"{ENV_VAR}={limit}={plain} in the environment"
    )


def limit_error(
    what: str,
    path: PathLike | None,
    where: str,
    found: str,
    limit: str,
    needed: int | float,
    fix: str,
) -> LimitError:
    """``Cannot decode <what> <file>: <found>, over the limit <limit> = <value>. Fix: ...``.

    Args:
        what: the kind of input (``"image"``, ``"audio"``).
        found: what was found, in words with its value (``"it has 100,000 x 100,000 =
            10,000,000,000 pixels"``).
        limit: the :class:`DecodeLimits` field.
        needed: a value of ``limit`` that would let this file through (shown in the fix).
        fix: the first remedy (shrink, cut, split the file), before raising the limit.
    """
    current = getattr(get_limits(), limit)
    shown = f"{current:,}" if isinstance(current, int) else f"{current:g}"
    return LimitError(
        f"Cannot decode {what} {_loc(path, where)}: {found}, over the limit {limit} = {shown}. "
        f"Fix: {fix}, or {_how_to_raise(limit, needed)}.",
        path=path,
        where=where,
        limit=limit,
        value=needed,
    )


def check_file_bytes(p: Path, path: PathLike, where: str, what: str, limit: str, fix: str) -> int:
    """The size of regular file ``p``, or a :class:`LimitError` when it is over ``limit``."""
    size = p.stat().st_size
    if size > getattr(get_limits(), limit):
        raise limit_error(what, path, where, f"the file has {size:,} bytes", limit, size, fix)
    return size


__all__ = [
    "ENV_VAR",
    "DecodeLimits",
    "check_file_bytes",
    "get_limits",
    "limit_error",
    "override_limits",
    "set_limits",
]
