"""Decoding cells: files, text, features and tabular numbers to values, labels to targets.

:class:`_Plan` (what :func:`polymodal.data.manifest.infer._plan` resolves) lives here
because it is everything decoding a row needs.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from polymodal.data.decode import decode_features, decode_file, decode_text
from polymodal.data.manifest.cells import _as_number, _is_int_key, _label_key, _multilabel_keys
from polymodal.data.manifest.problems import ManifestError
from polymodal.data.manifest.table import Cell, special_file_kind
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.errors import did_you_mean

# A file column is decoded by kind; these kinds live in files rather than cells.
_FILE_KINDS = (
    ModalityKind.IMAGE,
    ModalityKind.AUDIO,
    ModalityKind.VIDEO,
    ModalityKind.TIMESERIES,
    ModalityKind.FEATURES,
)


@dataclass(frozen=True)
class _Plan:
    """How a manifest's columns become a schema: everything decoding a row needs."""

    schema: Schema
    columns: dict[str, tuple[str, ...]]  # modality -> its columns
    label_column: str | None  # None: unlabelled
    class_index: dict[str, int] | None  # classification/multilabel: class name -> index
    required: tuple[str, ...] = ()
    # What was inferred and what was stated, for the user to see (describe_plan):
    sources: dict[str, str] = field(default_factory=dict)  # modality -> how its kind was set
    target_source: str = ""  # how the task was set ("" when unlabelled)
    unread: dict[str, str] = field(default_factory=dict)  # column no modality reads -> why
    inferred_shapes: frozenset[str] = frozenset()  # modalities whose shape came from the data


def _resolve_file(cell: Cell, base: Path) -> Path:
    p = Path(str(cell)).expanduser()
    return p if p.is_absolute() else base / p


def _refuse_special(path: Path, cell: str, where: str) -> None:
    """Raise if ``path`` is a device, FIFO or socket: reading one may never end."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing (the decoder says so) or an unusable name
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise ManifestError(
            f"{where}: {cell!r} is {special_file_kind(mode)}, not a regular file; polymodal "
            "does not read those (reading one may never end). Point the cell at a file."
        )


def _names_file(cell: str, base: Path) -> tuple[Path, int] | None:
    """``(path, st_mode)`` when a text cell reads as the path of an existing file.

    Only cells that look like paths are tried: one line, and absolute, or with a ``/``, or
    with an extension; folders do not count.
    """
    if "\n" in cell or len(cell) > 1024:
        return None
    p = Path(cell).expanduser()
    if not (p.is_absolute() or "/" in cell or os.sep in cell or p.suffix):
        return None
    full = p if p.is_absolute() else base / p
    try:
        mode = os.stat(full).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISDIR(mode) else (full, mode)


def _decode_text_cell(cell: Cell, base: Path, where: str) -> str:
    """A text cell as text.  A cell naming an existing file or a device is refused.

    Text columns hold the text itself: polymodal never opens the file a text cell names, so
    such a cell would be read as the words of its path.  That is almost always a path that
    was meant to be read (a column of ``.txt`` transcripts, a path without an extension), so
    it is an error rather than a silent string.
    """
    if isinstance(cell, list | dict):
        raise ManifestError(
            f"{where}: expected text, got a JSON {type(cell).__name__}. Give a string."
        )
    text = decode_text(str(cell), where=where)
    named = _names_file(text, base)
    if named is not None:
        path, mode = named
        if not stat.S_ISREG(mode):
            raise ManifestError(
                f"{where}: text cell {text!r} names {special_file_kind(mode)}; a text column "
                "holds the text itself and polymodal never reads a file (or device) for it. "
                "Put the text in the cell."
            )
        raise ManifestError(
            f"{where}: text cell {text!r} is the path of an existing file ({str(path)!r}); "
            "a text column holds the text itself and polymodal does not read text from "
            "files, so the model would read the path as words. Put the text in the cell; "
            "for files polymodal decodes, use a known extension (.wav, .jpg, .mp4, .csv, "
            ".npy, ...) so the column is read as audio, image, video, time series or features."
        )
    return text


def _decode_column(
    spec: ModalitySpec, cell: Cell, base: Path, where: str
) -> tuple[Tensor | str | None, Tensor | None, str | None]:
    """Decode one non-tabular cell: ``(value, timestamps, file)``; raises on bad input."""
    kind = spec.kind
    if kind is ModalityKind.TEXT:
        return _decode_text_cell(cell, base, where), None, None
    if kind is ModalityKind.FEATURES and (
        isinstance(cell, list) or (isinstance(cell, str) and cell.startswith("["))
    ):
        return decode_features(cell, where=where), None, None
    if kind in _FILE_KINDS:
        if not isinstance(cell, str):
            raise ManifestError(
                f"{where}: expected a path to a {kind.value} file, got {cell!r}. Give a path "
                "relative to the manifest's folder."
            )
        path = _resolve_file(cell, base)
        _refuse_special(path, cell, where)
        decoded = decode_file(path, kind, spec, where=where)
        frames = getattr(decoded, "frames", None)
        if isinstance(frames, Tensor):  # a VideoClip: frames are the value
            stamps = getattr(decoded, "timestamps", None)
            return frames, stamps if isinstance(stamps, Tensor) else None, cell
        values = getattr(decoded, "values", None)
        if isinstance(values, Tensor):  # a TimeSeries: (T, C) values and (T,) seconds
            stamps = getattr(decoded, "timestamps", None)
            return values, stamps if isinstance(stamps, Tensor) else None, cell
        if not isinstance(decoded, Tensor):
            raise ManifestError(
                f"{where}: decoding {cell!r} as {kind.value} gave a {type(decoded).__name__}, "
                "expected a tensor."
            )
        return decoded, None, cell
    raise ManifestError(
        f"{where}: modality {spec.name!r} of kind {kind.value!r} cannot be read from a cell."
    )


def _number(cell: Cell, where: str) -> float:
    x = _as_number(cell)
    if x is None:
        raise ManifestError(
            f"{where}: expected a number, got {cell!r}. Fix the cell, or leave it empty to "
            "mark the modality missing for this row."
        )
    if not math.isfinite(x):
        raise ManifestError(
            f"{where}: value {cell!r} is not a finite number (NaN/inf). Fix the cell, or "
            "leave it empty to mark the modality missing for this row."
        )
    return x


def _where(manifest: Path, line: int, col: str) -> str:
    return f"{manifest.name}: row {line}, column {col!r}"


def _encode_target(plan: _Plan, cell: Cell, where: str) -> int | float | Tensor | None:
    """A label cell as the target ``collate`` expects; raises ``ManifestError`` if invalid."""
    if plan.label_column is None or cell is None:
        return None
    t = plan.schema.target
    if t.task == "regression":
        return _number(cell, where)
    if t.task == "multilabel":
        if plan.class_index is None:  # _resolve_target always names multilabel classes
            raise RuntimeError("multilabel target without class names")
        hot = torch.zeros(t.num_classes)
        for key in _multilabel_keys(cell):
            if key not in plan.class_index:
                raise ManifestError(_unknown_label(where, key, t))
            hot[plan.class_index[key]] = 1.0
        return hot
    key = _label_key(cell)
    if plan.class_index is None:  # count-only classes: ints 0..K-1
        if not _is_int_key(key) or not 0 <= int(key) < t.num_classes:
            raise ManifestError(
                f"{where}: label {cell!r} is not a class index in 0..{t.num_classes - 1}. "
                "Fix the label, or give the schema's target class_names."
            )
        return int(key)
    if key not in plan.class_index:
        raise ManifestError(_unknown_label(where, key, t))
    return plan.class_index[key]


def _unknown_label(where: str, key: str, t: TargetSpec) -> str:
    names = list(t.class_names or ())
    msg = (
        f"{where}: label {key!r} is not one of the schema's classes "
        f"{names}. Fix the label or add it to the schema's target class_names."
    )
    return msg + did_you_mean(key, names)


def _tabular(
    cols: tuple[str, ...], row: Mapping[str, Cell], manifest: Path, line: int
) -> Tensor | None:
    if any(row.get(c) is None for c in cols):
        return None
    return torch.tensor(
        [_number(row.get(c), _where(manifest, line, c)) for c in cols], dtype=torch.float32
    )
