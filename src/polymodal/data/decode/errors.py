"""Decode errors and the helpers that say where: :class:`DecodeError`, :class:`MissingFileError`,
:class:`LimitError`.

Also holds the ``PathLike`` alias, the location helpers ``_loc`` / ``_at`` used in every
message, ``_error`` (the standard "Cannot decode ... Fix: ..." message) and ``_check_file``
(a missing file, a directory or a special file such as ``/dev/zero`` or a FIFO -> an error
that names it, before anything opens it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PathLike = str | os.PathLike[str]


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


class LimitError(DecodeError):
    """A file is over one of the decode limits (:class:`~polymodal.data.decode.DecodeLimits`).

    The message names the file, the limit, its value, what was found and how to raise it;
    ``limit`` is the limit's name and ``value`` a value of it that would let the file through.
    """

    def __init__(
        self,
        message: str,
        *,
        path: PathLike | None = None,
        where: str = "",
        limit: str = "",
        value: float = 0,
    ) -> None:
        super().__init__(message, path=path, where=where)
        self.limit = limit
        self.value = value


def _loc(path: PathLike | None, where: str) -> str:
    """``'file.jpg' (row 3, column 'image')``: the place an error is about."""
    parts = [] if path is None else [f"'{os.fspath(path)}'"]
    if where:
        parts.append(f"({where})")
    return " ".join(parts) if parts else "value"


def _at(where: str) -> str:
    return f" ({where})" if where else ""


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
    mode = p.stat().st_mode
    if stat.S_ISDIR(mode):
        raise DecodeError(
            f"Expected a file but '{os.fspath(path)}'"
            + (f" ({where})" if where else "")
            + " is a directory. Fix: point at a file inside it.",
            path=path,
            where=where,
        )
    if not stat.S_ISREG(mode):
        raise DecodeError(
            f"Expected a regular file but '{os.fspath(path)}'"
            + (f" ({where})" if where else "")
            + f" is a {_special_kind(mode)}, which is never read (it could block or never "
            "end). Fix: point at a regular file; copy the data into one first if need be.",
            path=path,
            where=where,
        )
    return p


def _special_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"
