"""Reading a CSV/TSV or JSONL manifest into raw cells (:class:`ManifestTable`); nothing decoded."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.data.manifest.problems import ManifestError, Problem

PathLike = str | os.PathLike[str]
Cell = str | int | float | bool | list[Any] | dict[str, Any] | None

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class ManifestTable:
    """A manifest's raw cells.

    Attributes:
        path: the manifest file.
        columns: the column names, in file order (JSONL: in order of first appearance).
        rows: one dict per example, column -> cell; empty cells (and absent JSONL keys)
            are ``None``; strings are stripped.
        lines: each row's number as the user sees it (CSV header = row 1; JSONL line).
        problems: structural problems (bad JSON line, wrong number of fields); those
            rows are left out of ``rows``.
    """

    path: Path
    columns: tuple[str, ...]
    rows: tuple[dict[str, Cell], ...]
    lines: tuple[int, ...]
    problems: tuple[Problem, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def values(self, column: str) -> list[Cell]:
        """The non-empty cells of ``column``."""
        return [r.get(column) for r in self.rows if r.get(column) is not None]


def _clean(cell: Any) -> Cell:
    if isinstance(cell, str):
        cell = cell.strip()
        return cell if cell else None
    return cell  # type: ignore[no-any-return]


def _manifest_path(path: PathLike) -> Path:
    p = Path(path).expanduser()
    if p.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ManifestError(
            f"Manifest {str(p)!r} has suffix {p.suffix!r}; expected one of "
            f"{', '.join(MANIFEST_SUFFIXES)}. Save it as CSV (one row per example, a header "
            "row) or JSONL (one JSON object per line)."
        )
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Manifest {str(p)!r} does not exist. Check the path (relative paths are "
            f"relative to the current folder, {os.getcwd()!r})."
        ) from None
    except OSError as e:
        raise ManifestError(f"Manifest {str(p)!r} cannot be read: {e.strerror}.") from None
    if stat.S_ISDIR(mode):
        raise ManifestError(f"Manifest {str(p)!r} is a folder; give the manifest file in it.")
    if not stat.S_ISREG(mode):
        raise ManifestError(
            f"Manifest {str(p)!r} is {special_file_kind(mode)}, not a regular file; save the "
            "manifest to a file and give its path."
        )
    return p


def special_file_kind(mode: int) -> str:
    """``"a FIFO (named pipe)"``, ``"a device"``... for a ``st_mode`` that is not a file."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _read_text(path: Path) -> str:
    """The file's text as UTF-8 (a BOM is dropped); a non-UTF-8 file names the first bad byte."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ManifestError(
            f"Manifest {str(path)!r} is UTF-16 text (it starts with a UTF-16 byte order mark). "
            "Save it as UTF-8 (in Excel: 'CSV UTF-8'; or `iconv -f UTF-16 -t UTF-8`)."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        text = data[start : end if end >= 0 else len(data)].decode("utf-8", errors="replace")
        bad = data[e.start : e.end].hex(" ")
        raise ManifestError(
            f"Manifest {str(path)!r} is not UTF-8: byte 0x{bad} at byte offset {e.start} "
            f"(line {line}: {text.rstrip()[:80]!r}) is not valid UTF-8; the file is probably "
            "Latin-1/Windows-1252. Save it as UTF-8 (in Excel: 'CSV UTF-8'; or "
            f"`iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name}`)."
        ) from None


def _records(reader: Any, path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(row, record)`` for each of ``reader``'s records, ``row`` being the line the record
    starts on; a ``csv.Error`` becomes a ``ManifestError`` naming the row."""
    prev_line = 0
    while True:
        start = prev_line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            hint = ""
            if "field larger than field limit" in str(e):
                hint = (
                    f" A cell over {csv.field_size_limit():,} characters almost always means a "
                    'quote (") that is never closed, so the rest of the file was read as one '
                    "cell: close the quote in this row (a quote inside a quoted cell is written "
                    'twice, ""). A text really that long does not belong in a manifest cell; '
                    "shorten it."
                )
            elif "NUL" in str(e):
                hint = " The file holds a NUL byte: it is not a text CSV file, or is damaged."
            raise ManifestError(
                f"Manifest {str(path)!r}: row {start} cannot be read as CSV ({e}).{hint}"
            ) from None
        prev_line = reader.line_num
        yield start, record


def _read_csv(path: Path, delimiter: str) -> ManifestTable:
    rows: list[dict[str, Cell]] = []
    lines: list[int] = []
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    header: list[str] | None = None
    for start, record in _records(reader, path):  # start: the line the record starts on
        if not record or all(not c.strip() for c in record):
            continue
        if header is None:
            header = [c.strip() for c in record]
            empty = [i + 1 for i, c in enumerate(header) if not c]
            if empty:
                raise ManifestError(
                    f"Manifest {str(path)!r}: header row has empty column name(s) at "
                    f"position(s) {empty}. Name every column."
                )
            dupes = sorted({c for c in header if header.count(c) > 1})
            if dupes:
                raise ManifestError(
                    f"Manifest {str(path)!r}: header row repeats column(s) {dupes}. "
                    "Give every column a unique name."
                )
            continue
        if len(record) != len(header):
            problems.append(
                Problem(
                    start,
                    None,
                    None,
                    f"has {len(record)} fields but the header has {len(header)}; "
                    "quote cells that contain the delimiter",
                )
            )
            continue
        rows.append({c: _clean(v) for c, v in zip(header, record, strict=True)})
        lines.append(start)
    if header is None:
        raise ManifestError(f"Manifest {str(path)!r} is empty; it needs a header row.")
    return ManifestTable(path, tuple(header), tuple(rows), tuple(lines), tuple(problems))


def _read_jsonl(path: Path) -> ManifestTable:
    rows: list[dict[str, Cell]] = []
    lines: list[int] = []
    problems: list[Problem] = []
    columns: dict[str, None] = {}
    with io.StringIO(_read_text(path)) as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(Problem(lineno, None, None, f"is not valid JSON ({e.msg})"))
                continue
            if not isinstance(obj, dict):
                problems.append(
                    Problem(
                        lineno,
                        None,
                        None,
                        f"is a JSON {type(obj).__name__}, expected an object "
                        '({"column": value, ...})',
                    )
                )
                continue
            for k in obj:
                columns.setdefault(str(k), None)
            rows.append({str(k): _clean(v) for k, v in obj.items()})
            lines.append(lineno)
    if not columns and not problems:
        raise ManifestError(f"Manifest {str(path)!r} is empty; it needs one JSON object a line.")
    cols = tuple(columns)
    full = tuple({c: r.get(c) for c in cols} for r in rows)
    return ManifestTable(path, cols, full, tuple(lines), tuple(problems))


def read_manifest(path: PathLike) -> ManifestTable:
    """Read a CSV/TSV or JSONL manifest's cells (nothing is decoded)."""
    p = _manifest_path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(p)
    return _read_csv(p, "\t" if suffix == ".tsv" else ",")
