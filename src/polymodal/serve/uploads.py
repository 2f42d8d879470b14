"""Uploaded files: size and type limits, base64 and multipart, decoded as training decodes.

A file reaches the server as a multipart upload or, in JSON, as a ``data:`` URL
(``data:image/jpeg;base64,...``) or an object ``{"filename": "x.jpg", "base64": "..."}``.
Its type is read from the file name's extension (or the data URL's media type) and must be
one :data:`~polymodal.data.decode.dispatch.EXTENSIONS` lists for the modality's kind (else
415); its size must be at most the server's ``max_upload_bytes`` (else 413).  It is written
to a private temporary folder and decoded by :func:`~polymodal.data.decode.decode_file`
with the modality's spec, exactly as a manifest row's file is; the client never names a
path on the server.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from polymodal.data.decode import decode_file
from polymodal.data.decode.dispatch import EXTENSIONS
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.serve.errors import RequestError

MEDIA_TYPES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/bmp": ".bmp",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/tiff": ".tiff",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "video/mp4": ".mp4",
    "video/mpeg": ".mpg",
    "video/x-msvideo": ".avi",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "video/webm": ".webm",
    "text/csv": ".csv",
    "application/octet-stream": "",
}
_DATA_URL = re.compile(r"^data:([\w.+/-]*)(;[\w=.+-]+)*;base64,", re.ASCII)


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the request ``field`` it came in, its type and its bytes."""

    field: str
    suffix: str  # lowercase extension with the dot, checked against the kind
    data: bytes


def allowed_suffixes(kind: ModalityKind) -> tuple[str, ...]:
    return EXTENSIONS.get(kind, ())


def check_type(field: str, suffix: str, kind: ModalityKind, given: str) -> str:
    """``suffix`` if a file of ``kind`` may have it, else a 415 naming ``field``."""
    suffix = suffix.lower()
    allowed = allowed_suffixes(kind)
    if suffix not in allowed:
        raise RequestError(
            415,
            f"{field}: {given!r} is not a {kind.value} file this server accepts; upload one "
            f"of {', '.join(allowed) or 'none (this kind takes no files)'}.",
            field,
        )
    return suffix


def too_large(field: str, size: int, limit: int) -> RequestError:
    return RequestError(
        413,
        f"{field}: the upload is {size:,} bytes, more than this server's limit of "
        f"{limit:,} bytes (--max-upload-mb). Send a smaller file.",
        field,
    )


def from_bytes(field: str, filename: str, data: bytes, kind: ModalityKind, limit: int) -> Upload:
    """A multipart upload of ``filename``, checked for size and type."""
    if len(data) > limit:
        raise too_large(field, len(data), limit)
    if not data:
        raise RequestError(400, f"{field}: the uploaded file {filename!r} is empty.", field)
    suffix = check_type(field, Path(filename or "").suffix, kind, filename or "(no file name)")
    return Upload(field, suffix, data)


def from_json(field: str, value: Any, kind: ModalityKind, limit: int) -> Upload:
    """A file given in JSON: a ``data:`` URL or ``{"filename": ..., "base64": ...}``."""
    if isinstance(value, dict):
        filename, payload = value.get("filename"), value.get("base64")
        if not isinstance(filename, str) or not isinstance(payload, str):
            raise RequestError(
                400,
                f"{field}: a file in JSON is an object with string 'filename' and 'base64', "
                f"got keys {sorted(value)}.",
                field,
            )
        suffix = check_type(field, Path(filename).suffix, kind, filename)
    elif isinstance(value, str) and (match := _DATA_URL.match(value)):
        media = match.group(1).lower()
        ext = MEDIA_TYPES.get(media)
        if ext is None or (ext == "" and kind is not ModalityKind.FEATURES):
            allowed = allowed_suffixes(kind)
            raise RequestError(
                415,
                f"{field}: media type {media!r} is not a {kind.value} type this server "
                f"accepts; send a file of type {', '.join(allowed)}.",
                field,
            )
        suffix = check_type(field, ext, kind, media)
        payload = value[match.end() :]
    else:
        raise RequestError(
            400,
            f"{field}: a {kind.value} input is a file: upload it (multipart), or give a "
            '\'data:<type>;base64,...\' URL or {"filename": ..., "base64": ...} in JSON; '
            f"got {type(value).__name__}.",
            field,
        )
    if len(payload) * 3 // 4 > limit + 3:  # checked before decoding
        raise too_large(field, len(payload) * 3 // 4, limit)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{field}: the base64 data does not decode.", field) from None
    if len(data) > limit:
        raise too_large(field, len(data), limit)
    if not data:
        raise RequestError(400, f"{field}: the file is empty.", field)
    return Upload(field, suffix, data)


def decode_upload(upload: Upload, spec: ModalitySpec) -> tuple[Tensor, Tensor | None]:
    """``(value, timestamps)`` of ``upload`` decoded with ``spec`` (as a manifest row's file
    is); an undecodable file is a 400 naming the field (never the server's paths)."""
    with tempfile.TemporaryDirectory(prefix="polymodal-serve-") as tmp:
        path = Path(tmp) / f"upload{upload.suffix}"
        path.write_bytes(upload.data)
        try:
            decoded = decode_file(path, spec.kind, spec, where=upload.field)
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            message = str(exc).replace(str(path), "the upload").replace(tmp + os.sep, "")
            raise RequestError(400, f"{upload.field}: {message}", upload.field) from None
    frames = getattr(decoded, "frames", None)  # a VideoClip
    values = getattr(decoded, "values", None)  # a TimeSeries
    stamps = getattr(decoded, "timestamps", None)
    if isinstance(frames, Tensor):
        return frames, stamps if isinstance(stamps, Tensor) else None
    if isinstance(values, Tensor):
        return values, stamps if isinstance(stamps, Tensor) else None
    if not isinstance(decoded, Tensor):
        raise RequestError(
            400, f"{upload.field}: a {spec.kind.value} file must decode to an array.", upload.field
        )
    return decoded, None
