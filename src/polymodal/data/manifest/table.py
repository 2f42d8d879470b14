"""Reading a CSV/TSV or JSONL manifest into raw cells (:class:`ManifestTable`); nothing decoded."""

from __future__ import annotations

import csv
import json
import os
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
    if not p.is_file():
        raise FileNotFoundError(
            f"Manifest {str(p)!r} does not exist. Check the path (relative paths are "
            f"relative to the current folder, {os.getcwd()!r})."
        )
    return p


def _read_csv(path: Path, delimiter: str) -> ManifestTable:
    rows: list[dict[str, Cell]] = []
    lines: list[int] = []
    problems: list[Problem] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header: list[str] | None = None
        prev_line = 0
        for record in reader:
            start = prev_line + 1  # the physical line this record starts on
            prev_line = reader.line_num
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
    with path.open(encoding="utf-8-sig") as f:
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
