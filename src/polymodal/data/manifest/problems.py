"""Problem records and the error raised when a manifest or its schema cannot be used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest.

    Attributes:
        row: the row as the user sees it (CSV: the header is row 1; JSONL: the line
            number), or ``None`` for a problem with the whole manifest or schema.
        column: the column concerned, or ``None``.
        file: the file the cell points at (as written in the manifest), or ``None``.
        message: what is wrong and, where it helps, how to fix it.
    """

    row: int | None
    column: str | None
    file: str | None
    message: str

    def __str__(self) -> str:
        where = [f"row {self.row}" if self.row is not None else "manifest"]
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.file is not None:
            where.append(f"file {self.file!r}")
        return f"{', '.join(where)}: {self.message}"


class ManifestError(ValueError):
    """A manifest or its schema cannot be used; the message names the file, row and column."""


def _show(cells: Sequence[tuple[int, Any]], limit: int = 5) -> str:
    shown = ", ".join(f"row {ln}: {c!r}" for ln, c in cells[:limit])
    return shown + (f" (and {len(cells) - limit} more)" if len(cells) > limit else "")
