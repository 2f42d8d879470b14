"""Reading a time series as a :class:`~polymodal.data.modality.ModalitySpec` says.

What training recorded in the spec, a file must match (:func:`decode_timeseries_for_spec`):

* ``channels``: read by name, so columns in another order give the same values; a channel
  the file lacks is an error naming the channels, the file's columns and the closest name;
* ``time_unit`` and ``sample_rate``: the ``timestamp`` column is read in ``time_unit`` and
  the rate its rows imply (:func:`series_rate`) must be within :data:`RATE_TOLERANCE` of
  ``sample_rate``; a file in seconds read as milliseconds (1000x off) is named as such;
* ``length``: a series shorter than :data:`MIN_LENGTH_FRACTION` of the fixed window length
  training used is an error.
"""

from __future__ import annotations

import csv

from polymodal.data.decode.errors import PathLike, _error
from polymodal.data.decode.timeseries import (
    _TIME_UNITS,
    TimeSeries,
    _check_timeseries_file,
    decode_timeseries,
)
from polymodal.data.modality import ModalitySpec
from polymodal.errors import did_you_mean

#: A file's rate may differ from the trained one by at most this fraction (jitter, clocks).
RATE_TOLERANCE = 0.2
#: A series shorter than this fraction of the trained window length is refused.
MIN_LENGTH_FRACTION = 0.5
#: Plural names of the time units, for messages.
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def series_rate(ts: TimeSeries) -> float | None:
    """Rows per second over the span of ``ts``' timestamps; ``None`` under two rows or no span."""
    n = int(ts.timestamps.shape[0])
    if n < 2:
        return None
    span = float(ts.timestamps[-1] - ts.timestamps[0])
    return (n - 1) / span if span > 0 else None


def _hz(rate: float) -> str:
    """``50 Hz``, ``0.05 Hz``, ``50,000 Hz``."""
    return f"{rate:,.0f} Hz" if rate >= 1000 else f"{rate:.4g} Hz"


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _read_header(path: PathLike, where: str) -> list[str]:
    p = _check_timeseries_file(path, where)  # bounded before its header is read
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    except (UnicodeDecodeError, csv.Error) as e:
        raise _error(
            "time series", path, where, f"cannot read its header ({e})", "save it as UTF-8 CSV"
        ) from e


def decode_timeseries_for_spec(
    path: PathLike, spec: ModalitySpec | None, where: str = ""
) -> TimeSeries:
    """Decode a time-series CSV as ``spec`` says (see the module docstring); no spec: every
    numeric column, timestamps in milliseconds, nothing checked."""
    header = _read_header(path, where)
    channels = list(spec.channels) if spec is not None and spec.channels is not None else None
    if spec is not None and channels is not None:
        missing = [c for c in channels if c not in header]
        if missing:
            raise _missing_channels(path, where, spec, missing, header)
    unit = spec.time_unit if spec is not None and spec.time_unit is not None else "ms"
    rate = spec.sample_rate if spec is not None else None
    stamped = "timestamp" in header
    if stamped:
        ts = decode_timeseries(path, columns=channels, time_unit=unit, where=where)
    elif rate is not None:
        ts = decode_timeseries(
            path, columns=channels, timestamp_column=None, sample_rate=rate, where=where
        )
    else:
        raise _error(
            "time series",
            path,
            where,
            f"it has no 'timestamp' column (columns: {', '.join(header)}) and no sample rate "
            "is known",
            f"add a 'timestamp' column ({UNIT_NAMES[unit]}) or set the spec's sample_rate",
        )
    if spec is None:
        return ts
    if spec.shape is not None and (ts.values.shape[1],) != spec.shape:
        raise _error(
            "time series",
            path,
            where,
            f"it has {ts.values.shape[1]} numeric channels "
            f"{ts.columns} but spec {spec.name!r} expects shape {spec.shape}",
            "fix the spec's shape or the file's columns",
        )
    _check_length(path, where, spec, ts)
    if stamped and rate is not None:
        _check_rate(path, where, spec, ts, unit, rate)
    return ts


def _missing_channels(
    path: PathLike, where: str, spec: ModalitySpec, missing: list[str], header: list[str]
) -> ValueError:
    channels = list(spec.channels or ())
    spare = [h for h in header if h not in channels and h not in ("timestamp", "label")]
    hints = [did_you_mean(m, spare).strip() for m in missing]
    if len(missing) == 1 == len(spare) and not hints[0]:  # one lacking, one unread: it?
        hints = [f"Did you mean {spare[0]!r}?"]
    hint = "; ".join(f"{m!r}: d{h[1:]}" for m, h in zip(missing, hints, strict=True) if h)
    unread = f"; not read: {', '.join(spare)}" if spare else ""
    lacks = ", ".join(repr(m) for m in missing)
    return _error(
        "time series",
        path,
        where,
        f"it lacks channel(s) {lacks} of modality {spec.name!r}. Expected channels (field "
        f"'channels', read by name, as trained): {', '.join(channels)}; found columns: "
        f"{', '.join(header)}{unread}" + (f" ({hint})" if hint else ""),
        "name the file's columns as the expected channels (any order), or use a model "
        "trained on these channels",
    )


def _check_length(path: PathLike, where: str, spec: ModalitySpec, ts: TimeSeries) -> None:
    if spec.length is None:
        return
    n = int(ts.values.shape[0])
    least = MIN_LENGTH_FRACTION * spec.length
    if n < least:
        rate = spec.sample_rate
        secs = "" if rate is None else f"; {spec.length / rate:g} s at {_hz(rate)}"
        raise _error(
            "time series",
            path,
            where,
            f"it has {_rows(n)} but modality {spec.name!r} was trained on windows of "
            f"{_rows(spec.length)} (field 'length'{secs}); a "
            f"series shorter than {least:g} rows is refused",
            f"give windows of {_rows(spec.length)}",
        )


def _check_rate(
    path: PathLike, where: str, spec: ModalitySpec, ts: TimeSeries, unit: str, rate: float
) -> None:
    found = series_rate(ts)
    if found is None:
        return  # one row, or every timestamp equal: no rate to compare
    if 1 / (1 + RATE_TOLERANCE) <= found / rate <= 1 + RATE_TOLERANCE:
        return
    span = float(ts.timestamps[-1] - ts.timestamps[0])
    fix = f"resample the recording to {_hz(rate)}, or use a model trained at {_hz(found)}"
    hint = ""
    for other, scale in _TIME_UNITS.items():
        if other != unit and abs(found * scale / _TIME_UNITS[unit] / rate - 1) <= RATE_TOLERANCE:
            hint = (
                f". The timestamps look like {UNIT_NAMES[other]}, not {UNIT_NAMES[unit]}: "
                f"read as {UNIT_NAMES[other]} they give {_hz(found * scale / _TIME_UNITS[unit])}"
            )
            factor = _TIME_UNITS[unit] / scale
            how = f"multiply by {factor:g}" if factor > 1 else f"divide by {1 / factor:g}"
            fix = f"write the 'timestamp' column in {UNIT_NAMES[unit]} ({how})"
            break
    raise _error(
        "time series",
        path,
        where,
        f"its timestamps, read in {UNIT_NAMES[unit]} (field 'time_unit'), imply "
        f"{_hz(found)} ({_rows(int(ts.values.shape[0]))} over {span:.4g} s), but modality "
        f"{spec.name!r} was trained at {_hz(rate)} (field 'sample_rate'), more than "
        f"{RATE_TOLERANCE:.0%} off{hint}",
        fix,
    )


__all__ = ["MIN_LENGTH_FRACTION", "RATE_TOLERANCE", "decode_timeseries_for_spec", "series_rate"]
