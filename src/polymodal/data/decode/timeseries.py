"""Time series: :class:`TimeSeries` and :func:`decode_timeseries` (a CSV table)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polymodal.data.decode.errors import DecodeError, PathLike, _check_file, _error, _loc
from polymodal.data.decode.limits import check_file_bytes, get_limits, limit_error
from polymodal.errors import did_you_mean, unknown_name_error

_TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


@dataclass
class TimeSeries:
    """A multichannel time series read from a table.

    Attributes:
        values: (T, C) float32.
        timestamps: (T,) float64 seconds (as in the file, converted from ``time_unit``).
        columns: the C channel names, in the order of ``values``' columns.
    """

    values: Tensor
    timestamps: Tensor
    columns: list[str]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _unknown_column(
    path: PathLike, where: str, name: str, header: list[str], param: str
) -> DecodeError:
    hint = did_you_mean(name, header)
    return DecodeError(
        f"Cannot decode time series {_loc(path, where)}: no column {name!r} (from '{param}'). "
        f"Available columns: {', '.join(header)}.{hint}",
        path=path,
        where=where,
    )


def _check_timeseries_file(path: PathLike, where: str) -> Path:
    """A regular file no larger than ``max_timeseries_bytes`` (checked before opening)."""
    p = _check_file(path, where)
    check_file_bytes(
        p,
        path,
        where,
        "time series",
        "max_timeseries_bytes",
        "split it into shorter recordings, or downsample it",
    )
    return p


def decode_timeseries(
    path: PathLike,
    columns: Sequence[str] | None = None,
    timestamp_column: str | None = "timestamp",
    time_unit: str = "ms",
    sample_rate: float | None = None,
    *,
    where: str = "",
) -> TimeSeries:
    """Read a CSV table (one header row, one row per step) into a :class:`TimeSeries`.

    Rules: a column is numeric when any of its non-empty cells parses as a number; with
    ``columns=None`` every numeric column except the timestamp is a channel (so a ``label``
    column of words is skipped, and one stray word in a column of numbers is an error, not
    a reason to skip the column).  Every cell of a selected column must be a finite number.  Timestamps
    must be non-decreasing: equal consecutive timestamps (sensor jitter, common in
    phone/watch logs) are kept, a step backwards is an error (sort the file first).

    Bounded (:mod:`~polymodal.data.decode.limits`): a file over ``max_timeseries_bytes`` is
    refused before it is opened, and reading stops past ``max_timeseries_rows`` rows.

    Args:
        path: the CSV file.
        columns: channel names in the wanted order; ``None`` for every numeric column.
        timestamp_column: the time column; ``None`` when the file has none, and then
            ``sample_rate`` gives ``timestamps = arange(T) / sample_rate``.
        time_unit: unit of the time column: ``"s"``, ``"ms"``, ``"us"`` or ``"ns"``.
        sample_rate: rows per second, used only when ``timestamp_column`` is ``None``.
        where: context for error messages.

    Returns:
        A :class:`TimeSeries` with (T, C) float32 values and (T,) float64 seconds.

    Raises:
        LimitError: the file is over ``max_timeseries_bytes`` or ``max_timeseries_rows``.
        DecodeError: not a CSV table of finite numbers with non-decreasing timestamps.
    """
    if time_unit not in _TIME_UNITS:
        raise unknown_name_error("time_unit", time_unit, list(_TIME_UNITS))
    if columns is not None and (isinstance(columns, str) or not isinstance(columns, Sequence)):
        raise TypeError(
            f"The 'columns' parameter must be a list of column names or None; got {columns!r}."
        )
    if timestamp_column is None:
        if sample_rate is None:
            raise ValueError(
                "decode_timeseries needs timestamps: pass timestamp_column=NAME, or "
                "timestamp_column=None together with sample_rate=HZ; got neither."
            )
        if not (
            isinstance(sample_rate, int | float) and math.isfinite(sample_rate) and sample_rate > 0
        ):
            raise ValueError(
                f"The 'sample_rate' parameter must be a positive number; got {sample_rate!r}."
            )
    p = _check_timeseries_file(path, where)
    max_rows = get_limits().max_timeseries_rows

    def fail(problem: str, fix: str) -> DecodeError:
        return _error("time series", path, where, problem, fix)

    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(rows) == max_rows:
                    raise limit_error(
                        "time series",
                        path,
                        where,
                        f"it has more than {max_rows:,} rows (reading stopped at line "
                        f"{reader.line_num:,})",
                        "max_timeseries_rows",
                        2 * max_rows,
                        "split it into shorter recordings, or downsample it",
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as e:
        raise fail(f"it is not a readable UTF-8 CSV file ({e})", "save it as UTF-8 CSV") from e
    if header is None:
        raise fail("the file is empty", "write a header row and one row per time step")
    header = [h.strip() for h in header]
    if not rows:
        raise fail("the file has a header but no data rows", "add one row per time step")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise fail(
                f"line {line} has {len(row)} cells but the header has {len(header)}",
                "give every row one cell per header column",
            )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise fail(f"duplicate column names {dupes}", "rename the columns so each is unique")

    col_index = {h: j for j, h in enumerate(header)}
    if timestamp_column is not None and timestamp_column not in col_index:
        raise _unknown_column(path, where, timestamp_column, header, "timestamp_column")

    def any_number(j: int) -> bool:
        return any(_is_number(row[j]) for row in rows if row[j].strip())

    if columns is None:
        names = [h for j, h in enumerate(header) if h != timestamp_column and any_number(j)]
        if not names:
            raise fail(
                f"no numeric column besides the timestamp (columns: {', '.join(header)})",
                "check the delimiter (a comma is expected) and the file's contents",
            )
    else:
        names = [str(c) for c in columns]
        if not names:
            raise ValueError("The 'columns' parameter is empty; pass None for every numeric one.")
        for name in names:
            if name not in col_index:
                raise _unknown_column(path, where, name, header, "columns")

    def numeric(name: str) -> np.ndarray:
        j = col_index[name]
        cells = [row[j] for row in rows]
        try:
            arr = np.array(cells, dtype=np.float64)
        except ValueError:
            for i, cell in enumerate(cells):
                if not _is_number(cell):
                    shown = repr(cell) if cell.strip() else "an empty cell"
                    raise fail(
                        f"row {i + 1} (line {lines[i]}), column {name!r} holds {shown}, "
                        "not a number",
                        f"fill in a number, or leave {name!r} out of 'columns'",
                    ) from None
            raise  # pragma: no cover - numpy and float() disagree
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            raise fail(
                f"row {i + 1} (line {lines[i]}), column {name!r} holds {cells[i].strip()!r} "
                f"({bad.size} non-finite cell(s) in this column)",
                "fill in or interpolate the missing values before decoding",
            )
        return arr

    values = np.stack([numeric(n) for n in names], axis=1).astype(np.float32)  # (T, C)
    if timestamp_column is not None:
        ts = numeric(timestamp_column) / _TIME_UNITS[time_unit]
        back = np.flatnonzero(np.diff(ts) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise fail(
                f"timestamps go backwards at row {i + 1} (line {lines[i]}): "
                f"{rows[i][col_index[timestamp_column]].strip()} after "
                f"{rows[i - 1][col_index[timestamp_column]].strip()}",
                f"sort the rows by {timestamp_column!r} (equal timestamps are allowed)",
            )
    else:
        ts = np.arange(len(rows), dtype=np.float64) / float(sample_rate or 1.0)
    return TimeSeries(
        values=torch.from_numpy(values),
        timestamps=torch.from_numpy(ts.astype(np.float64)),
        columns=names,
    )
