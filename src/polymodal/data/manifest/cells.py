"""Reading single cells: numbers, JSON lists, file kinds, a column's kind, label keys."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from polymodal.data.decode import kind_from_extension
from polymodal.data.manifest.table import Cell
from polymodal.data.modality import ModalityKind

MULTILABEL_SEP = ";"


def _as_number(cell: Cell) -> float | None:
    """``cell`` as a float if it is a number (or a string of one), else ``None``."""
    if isinstance(cell, bool):
        return float(cell)
    if isinstance(cell, int | float):
        return float(cell)
    if isinstance(cell, str):
        try:
            return float(cell)
        except ValueError:
            return None
    return None


def _as_list(cell: Cell) -> list[Any] | None:
    """``cell`` as a list if it is one (JSONL) or a JSON string of one (CSV), else ``None``."""
    if isinstance(cell, list):
        return cell
    if isinstance(cell, str) and cell.startswith("["):
        try:
            val = json.loads(cell)
        except json.JSONDecodeError:
            return None
        return val if isinstance(val, list) else None
    return None


def _file_kind(cell: Cell) -> ModalityKind | None:
    if not isinstance(cell, str) or "\n" in cell:
        return None
    return kind_from_extension(cell)


def _cell_kind(cell: Cell) -> str:
    """One cell's kind: ``"number"``, ``"list"``, a file kind's value, or ``"text"``."""
    if _as_number(cell) is not None:
        return "number"
    if _as_list(cell) is not None:
        return "list"
    kind = _file_kind(cell)
    return kind.value if kind is not None else "text"


def _column_kind(values: Sequence[Cell]) -> str:
    """``"empty"``, ``"number"``, ``"list"``, ``"text"``, a file kind's value,
    ``"mixed:<kinds>"`` (files of several kinds) or ``"ambiguous:<number|list>"``.

    A column is numeric (or a list column) only if EVERY non-empty cell is a number (a
    list): a column that mixes numbers or lists with other values is ``ambiguous`` and
    its kind must be stated, never guessed (one typo would otherwise turn a numeric column
    into text that no encoder reads).
    """
    if not values:
        return "empty"
    kinds = [_cell_kind(v) for v in values]
    counts = Counter(kinds)
    if len(counts) == 1 and kinds[0] in ("number", "list"):
        return kinds[0]
    files = {k: n for k, n in counts.items() if k not in ("number", "list", "text")}
    if len(files) > 1:
        return "mixed:" + ",".join(sorted(files))
    if len(files) == 1 and 2 * sum(files.values()) >= len(kinds):
        return next(iter(files))
    if counts["number"] or counts["list"]:
        return "ambiguous:" + ("number" if counts["number"] >= counts["list"] else "list")
    return "text"


def _label_key(cell: Cell) -> str:
    """A label cell as the string that names its class (``1``, ``1.0`` and ``"1"`` agree)."""
    if isinstance(cell, bool):
        return str(cell).lower()
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, int):
        return str(cell)
    return str(cell)


def _is_int_key(key: str) -> bool:
    try:
        int(key)
    except ValueError:
        return False
    return True


def _multilabel_keys(cell: Cell) -> list[str]:
    lst = _as_list(cell)
    if lst is not None:
        return [_label_key(v) for v in lst]
    return [k.strip() for k in _label_key(cell).split(MULTILABEL_SEP) if k.strip()]
