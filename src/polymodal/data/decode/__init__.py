"""Decoders: one file (or cell) in, one tensor (or string) out, with errors that say where.

Each decoder is a thin layer over the library made for its format (Pillow for images,
soundfile for audio, PyAV for video, numpy/csv for time series and features) and returns
the value layout documented on :class:`~polymodal.data.modality.ModalityKind`:

============ ================================================= ==============================
kind         d     ecoder                                      returns
============ =     =========================================== ==============================
text         :     func:`decode_text`                          ``str``
image        :     func:`decode_image`, :func:`image_from_array` (3, H, W) float32
audio        :     func:`decode_audio`                         (T,) float32 (or (C, T))
video        :     func:`decode_video`                         :class:`VideoClip`
timeseries   :     func:`decode_timeseries`                    :class:`TimeSeries`
features     :     func:`decode_features`                      (D,) or (T, D) float32
============ =     =========================================== ==============================

:func:`decode_     file` dispatches on a kind and reads sizes and rates from a
:class:`~polym     odal.data.modality.ModalitySpec`.

Every decoder      takes a keyword ``where`` (e.g. ``"row 12, column 'audio'"``) that it puts in
its error mess     ages, so that a bad cell in a 10,000-row manifest can be found.  A file that
cannot be deco     ded raises :class:`DecodeError` (a ``ValueError``); a file that does not exist
raises :class:     `MissingFileError` (both a ``DecodeError`` and a ``FileNotFoundError``).

Every read is      bounded by :class:`DecodeLimits` (pixels per image, seconds per recording,
bytes and rows      per table, characters per text, ...), checked from the header or the file's
size before de     coding; a file over a limit raises :class:`LimitError` naming the file, the
limit, its val     ue, what was found and how to raise it (:func:`set_limits`,
:func:`overrid     e_limits`, or ``POLYMODAL_LIMITS=name=value,...`` in the environment).
Devices, FIFOs      and directories are refused before they are opened.

Layout (one co     ncern per module; imports flow downwards only, ``errors`` first and
``dispatch`` l     ast, and this package re-exports the public names):

=================== ==========================================================================
module              holds
=================== ==========================================================================
``errors``          :class:`DecodeError`, :class:`MissingFileError`, :class:`LimitError`,
                    ``PathLike``, the location/message helpers (``_loc``, ``_at``, ``_error``,
                    ``_check_file``)
``limits``          :class:`DecodeLimits`, :func:`get_limits`, :func:`set_limits`,
                    :func:`override_limits` and the limit message (``limit_error``)
``image``           :func:`decode_image`, :func:`image_from_array`, ``IMAGENET_MEAN/STD``,
                    ``Size``, the resize/normalise helpers (reused by ``video``) and
                    :func:`inferred_image_shape`
``resample``        :func:`resample_audio` (Kaiser-windowed sinc) and ``_check_rate``
``audio``           :func:`decode_audio` and the truncated-WAV check
``video``           :class:`VideoClip`, :func:`decode_video`
``stream``          long media without holding it whole: :func:`iter_video_frames` (chunks),
                    :func:`decode_audio_track` (any container's audio), :func:`has_video_stream`
``timeseries``      :class:`TimeSeries`, :func:`decode_timeseries`
``timeseries_spec`` :func:`decode_timeseries_for_spec` (channels by name; time unit, rate
                    and window length checked against a spec), :func:`series_rate`
``text``            :func:`decode_text`
``features``        :func:`decode_features`
``dispatch``        :func:`decode_file`, :func:`kind_from_extension`, :data:`EXTENSIONS`,
                    :data:`Decoded`
=================== ==========================================================================
"""

from __future__ import annotations

from polymodal.data.decode.audio import decode_audio
from polymodal.data.decode.dispatch import EXTENSIONS, Decoded, decode_file, kind_from_extension
from polymodal.data.decode.errors import DecodeError, LimitError, MissingFileError
from polymodal.data.decode.errors import PathLike as PathLike
from polymodal.data.decode.features import decode_features
from polymodal.data.decode.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    decode_image,
    image_from_array,
    inferred_image_shape,
)
from polymodal.data.decode.image import Size as Size
from polymodal.data.decode.limits import DecodeLimits, get_limits, override_limits, set_limits
from polymodal.data.decode.resample import resample_audio
from polymodal.data.decode.stream import decode_audio_track, has_video_stream, iter_video_frames
from polymodal.data.decode.text import decode_text
from polymodal.data.decode.timeseries import TimeSeries, decode_timeseries
from polymodal.data.decode.timeseries_spec import decode_timeseries_for_spec, series_rate
from polymodal.data.decode.video import VideoClip, decode_video

__all__ = [
    "EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DecodeError",
    "DecodeLimits",
    "Decoded",
    "LimitError",
    "MissingFileError",
    "TimeSeries",
    "VideoClip",
    "decode_audio",
    "decode_audio_track",
    "decode_features",
    "decode_file",
    "decode_image",
    "decode_text",
    "decode_timeseries",
    "decode_timeseries_for_spec",
    "decode_video",
    "get_limits",
    "has_video_stream",
    "image_from_array",
    "inferred_image_shape",
    "iter_video_frames",
    "kind_from_extension",
    "override_limits",
    "resample_audio",
    "series_rate",
    "set_limits",
]
