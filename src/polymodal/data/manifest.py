"""A user's own data set as a CSV or JSONL manifest.

One row per example, one column per modality::

    id,audio,image,caption,age,height,label,split,group
    a1,wav/0_jackson_0.wav,img/1.jpg,a dog runs,31,1.80,zero,train,jackson
    a2,wav/1_nicolas_0.wav,,a cat sleeps,27,,one,test,nicolas

* file paths are relative to the manifest's folder (or ``base_dir``); absolute paths work too;
* inline text, inline numbers, and (JSONL, or a JSON string in CSV) inline feature lists;
* a label column (``label``), an optional split column (``split``), id column (``id``)
  and group column (``group``, the unit a validation split must not cut through).

An empty cell means "this example lacks this modality": the :class:`Sample` value is
``None`` and the batch's presence mask is False there.  It is never an error.

Column kinds are inferred (:func:`infer_schema`) unless a schema says otherwise:

* every non-empty value that has a known file extension maps to one kind, and at least
  half of the values do -> a modality of that kind (``.wav`` audio, ``.jpg`` image,
  ``.mp4`` video, ``.csv`` time series, ``.npy`` features, see
  :data:`polymodal.data.decode.EXTENSIONS`);
* all numbers -> one ``tabular`` modality named ``"tabular"`` holding ALL numeric columns
  as a (n,) vector, in column order (``tabular="separate"``: one (1,) modality per column).
  If any of its cells is empty in a row, the whole vector is missing for that row;
* lists of numbers -> ``features``;
* anything else -> ``text``.

The label is a classification target with classes sorted from its values (numerically when
all are integers) unless the schema says regression or multilabel; labels that are numbers
with a fractional part are inferred as regression.  Multilabel cells are JSON lists or
``;``-separated strings.

A schema file (YAML or JSON) fixes what inference would guess::

    modalities:                       # ModalitySpec.to_dict() fields
      - {name: voice, kind: audio, sample_rate: 8000}
      - {name: caption, kind: text}
      - {name: tabular, kind: tabular}
    target: {task: classification, class_names: [one, zero]}
    columns: {voice: audio, caption: caption, tabular: [age, height]}   # optional
    required: [voice]                 # optional: modalities check_manifest wants present

A modality reads the column of its own name unless ``columns`` maps it elsewhere; a
``tabular`` modality whose name is not a column takes every numeric column no other
modality claims.  The schema target's ``name`` (if given) is the label column.

:func:`check_manifest` decodes every row and file and returns ALL problems found
(missing or corrupt files, NaN, unknown labels, wrong shapes, unknown columns) as
:class:`Problem` records instead of stopping at the first; ``polymodal datasets check``
prints them.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.decode import decode_features, decode_file, decode_text, kind_from_extension
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import Sample
from polymodal.registry import unknown_name_error

__all__ = [
    "MANIFEST_SUFFIXES",
    "ManifestDataset",
    "ManifestTable",
    "Problem",
    "SchemaFile",
    "check_manifest",
    "infer_schema",
    "load_schema_file",
    "read_manifest",
]

PathLike = str | os.PathLike[str]
Cell = str | int | float | bool | list[Any] | dict[str, Any] | None

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
SCHEMA_SUFFIXES = (".yaml", ".yml", ".json")
SCHEMA_KEYS = ("modalities", "target", "columns", "required")
TABULAR_MODES = ("group", "separate")
MULTILABEL_SEP = ";"

# A file column is decoded by kind; these kinds live in files rather than cells.
_FILE_KINDS = (
    ModalityKind.IMAGE,
    ModalityKind.AUDIO,
    ModalityKind.VIDEO,
    ModalityKind.TIMESERIES,
    ModalityKind.FEATURES,
)


# --------------------------------------------------------------------------- problems


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


# --------------------------------------------------------------------------- reading


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


# --------------------------------------------------------------------------- cells


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


def _column_kind(values: Sequence[Cell]) -> str:
    """``"empty"``, ``"number"``, ``"list"``, ``"text"`` or a file kind's value."""
    if not values:
        return "empty"
    if all(_as_number(v) is not None for v in values):
        return "number"
    if all(_as_list(v) is not None for v in values):
        return "list"
    kinds = [_file_kind(v) for v in values]
    found = {k for k in kinds if k is not None}
    if len(found) == 1 and 2 * sum(k is not None for k in kinds) >= len(kinds):
        return next(iter(found)).value
    if len(found) > 1:
        return "mixed:" + ",".join(sorted(k.value for k in found))
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


# --------------------------------------------------------------------------- schema files


@dataclass(frozen=True)
class SchemaFile:
    """A parsed schema file: modalities, target fields, column mapping, required modalities."""

    modalities: tuple[ModalitySpec, ...]
    target: dict[str, Any] | None = None
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()


def load_schema_file(path: PathLike) -> SchemaFile:
    """Read a YAML/JSON schema file (see the module docstring for its layout)."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in SCHEMA_SUFFIXES:
        raise ManifestError(
            f"Schema file {str(p)!r} has suffix {p.suffix!r}; expected one of "
            f"{', '.join(SCHEMA_SUFFIXES)} (YAML or JSON)."
        )
    if not p.is_file():
        raise FileNotFoundError(f"Schema file {str(p)!r} does not exist. Check the path.")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as e:
        raise ManifestError(f"Schema file {str(p)!r} is not valid JSON: {e}") from None
    except Exception as e:  # yaml.YAMLError; yaml is imported lazily
        raise ManifestError(f"Schema file {str(p)!r} is not valid YAML: {e}") from None
    return _parse_schema_dict(data, str(p))


def _parse_schema_dict(data: Any, where: str) -> SchemaFile:
    if not isinstance(data, dict):
        raise ManifestError(
            f"Schema file {where!r} must hold a mapping with keys {list(SCHEMA_KEYS)}; "
            f"got a {type(data).__name__}."
        )
    for key in data:
        if key not in SCHEMA_KEYS:
            err = unknown_name_error("schema key", key, list(SCHEMA_KEYS))
            raise ManifestError(f"Schema file {where!r}: {err}")
    mods = data.get("modalities")
    if not isinstance(mods, list) or not mods:
        raise ManifestError(
            f"Schema file {where!r}: 'modalities' must be a non-empty list of "
            "{name, kind, shape?, sample_rate?, ...} mappings; "
            f"got {type(mods).__name__ if mods is not None else 'nothing'}."
        )
    specs: list[ModalitySpec] = []
    for i, m in enumerate(mods):
        if not isinstance(m, dict) or "name" not in m or "kind" not in m:
            raise ManifestError(
                f"Schema file {where!r}: modalities[{i}] must be a mapping with at least "
                f"'name' and 'kind'; got {m!r}."
            )
        try:
            specs.append(ModalitySpec.from_dict(m))
        except ValueError as e:
            raise ManifestError(f"Schema file {where!r}: modalities[{i}]: {e}") from None
    target = data.get("target")
    if target is not None and not isinstance(target, dict):
        raise ManifestError(
            f"Schema file {where!r}: 'target' must be a mapping such as "
            f"{{task: classification, class_names: [a, b]}}; got {target!r}."
        )
    if target is not None:
        valid = ("task", "num_classes", "class_names", "name")
        for key in target:
            if key not in valid:
                err = unknown_name_error("target field", key, list(valid))
                raise ManifestError(f"Schema file {where!r}: {err}")
    names = [s.name for s in specs]
    columns: dict[str, tuple[str, ...]] = {}
    raw_cols = data.get("columns") or {}
    if not isinstance(raw_cols, dict):
        raise ManifestError(
            f"Schema file {where!r}: 'columns' must map modality names to a column or a list "
            f"of columns; got {raw_cols!r}."
        )
    for mod, cols in raw_cols.items():
        if mod not in names:
            err = unknown_name_error("modality", mod, names)
            raise ManifestError(f"Schema file {where!r}: 'columns': {err}")
        if isinstance(cols, str):
            columns[mod] = (cols,)
        elif isinstance(cols, list) and cols and all(isinstance(c, str) for c in cols):
            columns[mod] = tuple(cols)
        else:
            raise ManifestError(
                f"Schema file {where!r}: columns[{mod!r}] must be a column name or a list of "
                f"them; got {cols!r}."
            )
    required = data.get("required") or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ManifestError(
            f"Schema file {where!r}: 'required' must be a list of modality names; got {required!r}."
        )
    for r in required:
        if r not in names:
            err = unknown_name_error("modality", r, names)
            raise ManifestError(f"Schema file {where!r}: 'required': {err}")
    return SchemaFile(tuple(specs), target, columns, tuple(required))


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class _Plan:
    """How a manifest's columns become a schema: everything decoding a row needs."""

    schema: Schema
    columns: dict[str, tuple[str, ...]]  # modality -> its columns
    label_column: str | None  # None: unlabelled
    class_index: dict[str, int] | None  # classification/multilabel: class name -> index
    required: tuple[str, ...] = ()


def _unknown_column(name: str, available: Sequence[str], what: str) -> str:
    msg = (
        f"{what} names column {name!r}, which the manifest does not have. "
        f"Available columns: {', '.join(available)}."
    )
    close = difflib.get_close_matches(name, list(available), n=1, cutoff=0.5)
    if close:
        msg += f" Did you mean {close[0]!r}?"
    return msg


def _infer_modalities(
    table: ManifestTable, reserved: set[str], tabular: str
) -> tuple[list[ModalitySpec], dict[str, tuple[str, ...]]]:
    specs: list[ModalitySpec] = []
    columns: dict[str, tuple[str, ...]] = {}
    numeric: list[str] = []
    for col in table.columns:
        if col in reserved:
            continue
        kind = _column_kind(table.values(col))
        if kind.startswith("mixed:"):
            raise ManifestError(
                f"Manifest {str(table.path)!r}: column {col!r} holds files of several kinds "
                f"({kind[6:]}). Put each kind in its own column, or give a schema."
            )
        if kind == "number":
            numeric.append(col)
            if tabular == "separate":
                specs.append(ModalitySpec(col, ModalityKind.TABULAR, shape=(1,)))
                columns[col] = (col,)
            continue
        if kind == "list":
            specs.append(ModalitySpec(col, ModalityKind.FEATURES))
        elif kind in ("text", "empty"):
            specs.append(ModalitySpec(col, ModalityKind.TEXT))
        else:
            specs.append(ModalitySpec(col, ModalityKind(kind)))
        columns[col] = (col,)
    if numeric and tabular == "group":
        name = "tabular"
        while name in columns:
            name = "_" + name
        specs.append(ModalitySpec(name, ModalityKind.TABULAR, shape=(len(numeric),)))
        columns[name] = tuple(numeric)
    return specs, columns


def _map_columns(
    table: ManifestTable,
    specs: Sequence[ModalitySpec],
    given: Mapping[str, tuple[str, ...]],
    reserved: set[str],
    problems: list[Problem] | None,
) -> tuple[list[ModalitySpec], dict[str, tuple[str, ...]]]:
    """Each modality's columns; unknown columns raise (or become problems when collecting)."""
    available = [c for c in table.columns if c not in reserved]
    kept: list[ModalitySpec] = []
    columns: dict[str, tuple[str, ...]] = {}
    claimed: set[str] = set()
    pending_tabular: list[ModalitySpec] = []
    for spec in specs:
        if spec.name in given:
            cols = given[spec.name]
        elif spec.name in table.columns:
            cols = (spec.name,)
        elif spec.kind is ModalityKind.TABULAR:
            pending_tabular.append(spec)
            kept.append(spec)
            continue
        else:
            cols = (spec.name,)
        bad = [c for c in cols if c not in table.columns]
        if bad:
            for c in bad:
                msg = _unknown_column(c, available, f"The schema's modality {spec.name!r}")
                if problems is None:
                    raise ManifestError(f"Manifest {str(table.path)!r}: {msg}")
                problems.append(Problem(None, c, None, msg))
            continue
        if len(cols) > 1 and spec.kind is not ModalityKind.TABULAR:
            raise ManifestError(
                f"Schema modality {spec.name!r} (kind {spec.kind.value!r}) maps to "
                f"{len(cols)} columns {list(cols)}; only tabular modalities may span "
                "several columns. Map it to one column."
            )
        kept.append(spec)
        columns[spec.name] = cols
        claimed.update(cols)
    for spec in pending_tabular:
        numeric = tuple(
            c
            for c in table.columns
            if c not in reserved and c not in claimed and _column_kind(table.values(c)) == "number"
        )
        if not numeric:
            msg = (
                f"The schema's tabular modality {spec.name!r} is not a column and no numeric "
                f"column is left for it. Available columns: {', '.join(available)}. Map it "
                "with columns: {" + spec.name + ": [col, ...]}."
            )
            if problems is None:
                raise ManifestError(f"Manifest {str(table.path)!r}: {msg}")
            problems.append(Problem(None, spec.name, None, msg))
            kept.remove(spec)
            continue
        columns[spec.name] = numeric
        claimed.update(numeric)
    return kept, columns


def _resolve_target(
    table: ManifestTable,
    label_column: str | None,
    target: TargetSpec | dict[str, Any] | None,
) -> tuple[TargetSpec, dict[str, int] | None]:
    if label_column is None:
        return TargetSpec("classification", 0, (), name=""), None
    values = table.values(label_column)
    num: int | None
    if isinstance(target, TargetSpec):
        task = target.task
        names = target.class_names
        num = target.num_classes
    elif target is not None:
        task = str(target.get("task", "classification"))
        raw = target.get("class_names")
        names = tuple(str(n) for n in raw) if raw else None
        num = int(target["num_classes"]) if target.get("num_classes") is not None else None
    else:
        numbers = [_as_number(v) for v in values]
        lists = [_as_list(v) for v in values]
        if values and all(x is not None for x in lists):
            task = "multilabel"
        elif (
            values
            and all(x is not None and math.isfinite(x) for x in numbers)
            and any(not float(x).is_integer() for x in numbers if x is not None)
        ):
            task = "regression"
        else:
            task = "classification"
        names, num = None, None
    if task == "regression":
        return TargetSpec("regression", 1, None, name=label_column), None
    if names is None and task == "classification" and num is not None:
        # classes given by count only: labels must be the ints 0..num-1
        return TargetSpec("classification", num, None, name=label_column), None
    if names is None:
        keys: set[str] = set()
        for v in values:
            keys.update(_multilabel_keys(v) if task == "multilabel" else [_label_key(v)])
        if keys and all(_is_int_key(k) for k in keys):
            names = tuple(sorted(keys, key=int))
        else:
            names = tuple(sorted(keys))
    if num is not None and num != len(names):
        raise ManifestError(
            f"The schema's target has num_classes={num} but {len(names)} class_names; "
            "drop num_classes or make them agree."
        )
    spec = TargetSpec(task, len(names), names, name=label_column)
    return spec, {n: i for i, n in enumerate(names)}


def _plan(
    table: ManifestTable,
    schema: Schema | SchemaFile | PathLike | None,
    *,
    label_column: str,
    split_column: str,
    id_column: str,
    group_column: str,
    tabular: str,
    problems: list[Problem] | None = None,
) -> _Plan:
    if tabular not in TABULAR_MODES:
        raise unknown_name_error("tabular mode", tabular, list(TABULAR_MODES))
    if schema is not None and not isinstance(schema, Schema | SchemaFile):
        schema = load_schema_file(schema)
    target: TargetSpec | dict[str, Any] | None = None
    given: dict[str, tuple[str, ...]] = {}
    required: tuple[str, ...] = ()
    if isinstance(schema, Schema):
        target = schema.target
    elif isinstance(schema, SchemaFile):
        target = schema.target
        given = dict(schema.columns)
        required = schema.required
        if schema.target is not None and schema.target.get("name"):
            label_column = str(schema.target["name"])
    label: str | None = label_column if label_column in table.columns else None
    named_label = (
        isinstance(schema, SchemaFile) and schema.target is not None and schema.target.get("name")
    )
    if label is None and named_label:
        msg = _unknown_column(label_column, list(table.columns), "The schema's target")
        if problems is None:
            raise ManifestError(f"Manifest {str(table.path)!r}: {msg}")
        problems.append(Problem(None, label_column, None, msg))
    reserved = {c for c in (label_column, split_column, id_column, group_column) if c}
    if schema is None:
        specs, columns = _infer_modalities(table, reserved, tabular)
    else:
        specs, columns = _map_columns(table, schema.modalities, given, reserved, problems)
    if not specs and problems is None:
        raise ManifestError(
            f"Manifest {str(table.path)!r} has no modality columns (columns: "
            f"{', '.join(table.columns)}; reserved for label/split/id/group: "
            f"{', '.join(sorted(reserved))})."
        )
    target_spec, class_index = _resolve_target(table, label, target)
    specs = [_with_shape(s, columns[s.name], table) for s in specs]
    return _Plan(Schema(tuple(specs), target_spec), columns, label, class_index, required)


def _with_shape(spec: ModalitySpec, cols: tuple[str, ...], table: ManifestTable) -> ModalitySpec:
    """Fill in a missing ``shape`` (and audio ``sample_rate``) by decoding the first value.

    Collate needs the shape to zero-fill a batch in which the modality is missing
    everywhere.  A first value that fails to decode leaves the spec as it is (check_manifest
    reports the file).
    """
    if spec.kind is ModalityKind.TEXT:
        return spec
    if spec.kind is ModalityKind.TABULAR:
        return spec if spec.shape is not None else replace(spec, shape=(len(cols),))
    if spec.shape is not None and (spec.kind is not ModalityKind.AUDIO or spec.sample_rate):
        return spec
    for row in table.rows:
        cell = row.get(cols[0])
        if cell is None:
            continue
        try:
            value, _, _ = _decode_column(spec, cell, table.path.parent, where="")
        except (ValueError, OSError, RuntimeError):
            return spec
        if not isinstance(value, Tensor):
            return spec
        if spec.kind is ModalityKind.AUDIO:
            rate = _audio_rate(Path(str(cell)), table.path.parent)
            return replace(spec, shape=(), sample_rate=spec.sample_rate or rate)
        if spec.kind is ModalityKind.IMAGE:
            return replace(spec, shape=tuple(value.shape))
        if spec.kind is ModalityKind.FEATURES:
            seq = value.dim() == 2
            return replace(spec, shape=tuple(value.shape[1:] if seq else value.shape), sequence=seq)
        return replace(spec, shape=tuple(value.shape[1:]))
    return spec


def _audio_rate(path: Path, base: Path) -> float | None:
    p = path if path.is_absolute() else base / path
    try:
        import soundfile

        return float(soundfile.info(str(p)).samplerate)
    except Exception:  # not a soundfile-readable container (e.g. mp3 via av); rate unknown
        return None


# --------------------------------------------------------------------------- decoding


def _resolve_file(cell: Cell, base: Path) -> Path:
    p = Path(str(cell)).expanduser()
    return p if p.is_absolute() else base / p


def _decode_column(
    spec: ModalitySpec, cell: Cell, base: Path, where: str
) -> tuple[Tensor | str | None, Tensor | None, str | None]:
    """Decode one non-tabular cell: ``(value, timestamps, file)``; raises on bad input."""
    kind = spec.kind
    if kind is ModalityKind.TEXT:
        if isinstance(cell, list | dict):
            raise ManifestError(
                f"{where}: expected text, got a JSON {type(cell).__name__}. Give a string."
            )
        return decode_text(str(cell), where=where), None, None
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
        decoded = decode_file(_resolve_file(cell, base), kind, spec, where=where)
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
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    if close:
        msg += f" Did you mean {close[0]!r}?"
    return msg


def _tabular(
    cols: tuple[str, ...], row: Mapping[str, Cell], manifest: Path, line: int
) -> Tensor | None:
    if any(row.get(c) is None for c in cols):
        return None
    return torch.tensor(
        [_number(row.get(c), _where(manifest, line, c)) for c in cols], dtype=torch.float32
    )


# --------------------------------------------------------------------------- data set


class ManifestDataset(MultimodalDataset):
    """A :class:`MultimodalDataset` read from a CSV/JSONL manifest, decoding lazily.

    Args:
        path: the manifest (``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``).
        schema: ``None`` to infer column kinds (:func:`infer_schema`), a :class:`Schema`,
            or the path of a YAML/JSON schema file.
        split: keep only rows whose split column equals this (``None``: all rows).
        label_column, split_column, id_column, group_column: the reserved columns;
            a missing label column makes the data set unlabelled (targets ``None``).
        base_dir: the folder relative file paths start from (default: the manifest's).
        tabular: ``"group"`` (all numeric columns in one ``tabular`` vector) or
            ``"separate"`` (one (1,) modality per numeric column); inference only.

    Labels are checked when the data set is built (an unknown label or a mix of labelled
    and unlabelled rows raises, naming the rows); files are decoded in ``__getitem__``,
    whose errors name the manifest, the row, the column and the file.
    """

    def __init__(
        self,
        path: PathLike,
        schema: Schema | SchemaFile | PathLike | None = None,
        split: str | None = None,
        label_column: str = "label",
        split_column: str = "split",
        id_column: str = "id",
        base_dir: PathLike | None = None,
        *,
        group_column: str = "group",
        tabular: str = "group",
    ) -> None:
        table = read_manifest(path)
        if table.problems:
            shown = "\n".join(f"  {p}" for p in table.problems[:5])
            raise ManifestError(
                f"Manifest {str(table.path)!r} has {len(table.problems)} unreadable row(s):\n"
                f"{shown}\nFix them; `polymodal datasets check {table.path}` lists all."
            )
        plan = _plan(
            table,
            schema,
            label_column=label_column,
            split_column=split_column,
            id_column=id_column,
            group_column=group_column,
            tabular=tabular,
        )
        rows, lines = list(table.rows), list(table.lines)
        split_values = sorted({str(r[split_column]) for r in rows if r.get(split_column)})
        if split is not None:
            if split_column not in table.columns:
                raise ManifestError(
                    f"ManifestDataset(split={split!r}) needs a split column, but manifest "
                    f"{str(table.path)!r} has no column {split_column!r} (columns: "
                    f"{', '.join(table.columns)}). Add one, pass split_column=..., or split=None."
                )
            if split not in split_values:
                raise unknown_name_error("split", split, split_values)
            keep = [i for i, r in enumerate(rows) if r.get(split_column) == split]
            rows, lines = [rows[i] for i in keep], [lines[i] for i in keep]

        self.path = table.path
        self.base_dir = Path(base_dir).expanduser() if base_dir is not None else table.path.parent
        self.schema = plan.schema
        self.name = table.path.stem
        self.split = split if split is not None else "all"
        self.splits = tuple(split_values)
        self.columns = dict(plan.columns)
        self._plan = plan
        self._rows = tuple(rows)
        self._lines = tuple(lines)
        self._id_column = id_column
        self._group_column = group_column
        self._split_column = split_column
        self._targets = self._encode_targets()

    def _encode_targets(self) -> list[int | float | Tensor | None]:
        plan = self._plan
        if plan.label_column is None:
            return [None] * len(self._rows)
        out: list[int | float | Tensor | None] = []
        errors: list[str] = []
        for row, line in zip(self._rows, self._lines, strict=True):
            try:
                out.append(
                    _encode_target(
                        plan, row.get(plan.label_column), _where(self.path, line, plan.label_column)
                    )
                )
            except ManifestError as e:
                errors.append(str(e))
                out.append(None)
        missing = [ln for ln, t in zip(self._lines, out, strict=True) if t is None]
        if errors:
            shown = "\n".join(f"  {e}" for e in errors[:5])
            raise ManifestError(
                f"Manifest {str(self.path)!r} has {len(errors)} invalid label(s):\n{shown}\n"
                f"`polymodal datasets check {self.path}` lists every problem."
            )
        if missing and len(missing) < len(out):
            raise ManifestError(
                f"Manifest {str(self.path)!r}: rows {missing[:10]} have an empty "
                f"{plan.label_column!r} while other rows are labelled. Label them, or move "
                "them to a split of their own."
            )
        return out

    def __len__(self) -> int:
        return len(self._rows)

    def _id(self, row: Mapping[str, Cell], line: int) -> str:
        v = row.get(self._id_column)
        return str(v) if v is not None else f"row{line}"

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a manifest of {len(self)} rows")
        row, line = self._rows[index], self._lines[index]
        mods: dict[str, Tensor | str | None] = {}
        stamps: dict[str, Tensor] = {}
        files: dict[str, str] = {}
        for spec in self.schema.modalities:
            cols = self.columns[spec.name]
            if spec.kind is ModalityKind.TABULAR:
                mods[spec.name] = _tabular(cols, row, self.path, line)
                continue
            cell = row.get(cols[0])
            if cell is None:
                mods[spec.name] = None
                continue
            value, ts, file = _decode_column(
                spec, cell, self.base_dir, _where(self.path, line, cols[0])
            )
            mods[spec.name] = value
            if ts is not None:
                stamps[spec.name] = ts
            if file is not None:
                files[spec.name] = file
        meta: dict[str, Any] = {"manifest": str(self.path), "row": line, "files": files}
        for key, col in (("split", self._split_column), ("group", self._group_column)):
            if row.get(col) is not None:
                meta[key] = str(row[col])
        return Sample(self._id(row, line), mods, self._targets[index], stamps, meta)

    def targets(self) -> list[Any]:
        return list(self._targets)

    def ids(self) -> list[str]:
        return [self._id(r, ln) for r, ln in zip(self._rows, self._lines, strict=True)]

    def groups(self) -> list[str]:
        """The ``group`` column (the row's id where it is empty, or with no such column)."""
        out = []
        for r, ln in zip(self._rows, self._lines, strict=True):
            g = r.get(self._group_column)
            out.append(str(g) if g is not None else self._id(r, ln))
        return out

    def __repr__(self) -> str:
        mods = ", ".join(f"{m.name}:{m.kind.value}" for m in self.schema.modalities)
        return f"ManifestDataset({str(self.path)!r}, split={self.split!r}, n={len(self)}, [{mods}])"


def infer_schema(
    path: PathLike,
    *,
    label_column: str = "label",
    split_column: str = "split",
    id_column: str = "id",
    group_column: str = "group",
    tabular: str = "group",
) -> Schema:
    """The :class:`Schema` :class:`ManifestDataset` would infer for the manifest at ``path``.

    Column kinds follow the rules in the module docstring; shapes (and audio sample rates)
    come from decoding each file column's first value.  Save it with ``schema.to_dict()``
    and edit it to fix a guess.
    """
    table = read_manifest(path)
    return _plan(
        table,
        None,
        label_column=label_column,
        split_column=split_column,
        id_column=id_column,
        group_column=group_column,
        tabular=tabular,
    ).schema


# --------------------------------------------------------------------------- checking


def _step_shape(spec: ModalitySpec, t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape[1:]) if spec.is_sequence else tuple(t.shape)


_EXPECTED_DIMS = {
    ModalityKind.IMAGE: 3,
    ModalityKind.AUDIO: 1,
    ModalityKind.VIDEO: 4,
    ModalityKind.TIMESERIES: 2,
}


def check_manifest(
    path: PathLike,
    schema: Schema | SchemaFile | PathLike | None = None,
    *,
    label_column: str = "label",
    split_column: str = "split",
    id_column: str = "id",
    group_column: str = "group",
    base_dir: PathLike | None = None,
    tabular: str = "group",
) -> list[Problem]:
    """Decode every row and file of a manifest and return ALL problems, sorted by row.

    Reported: unreadable rows, unknown columns named by the schema, missing files, files
    that fail to decode, NaN/inf numbers or decoded values, wrong ndim or shape against
    the schema, labels outside the schema's classes, empty labels among labelled rows,
    empty cells of ``required`` modalities, duplicate ids.  An empty cell elsewhere is a
    missing modality, not a problem.  Raises only when the manifest or the schema file
    cannot be read at all.
    """
    table = read_manifest(path)
    problems: list[Problem] = list(table.problems)
    plan = _plan(
        table,
        schema,
        label_column=label_column,
        split_column=split_column,
        id_column=id_column,
        group_column=group_column,
        tabular=tabular,
        problems=problems,
    )
    base = Path(base_dir).expanduser() if base_dir is not None else table.path.parent
    labelled = plan.label_column is not None and bool(table.values(plan.label_column))
    seen_ids: dict[str, int] = {}
    for row, line in zip(table.rows, table.lines, strict=True):
        rid = row.get(id_column)
        if rid is not None:
            key = str(rid)
            if key in seen_ids:
                problems.append(
                    Problem(
                        line,
                        id_column,
                        None,
                        f"id {key!r} repeats row {seen_ids[key]}; ids must be unique",
                    )
                )
            else:
                seen_ids[key] = line
        if plan.label_column is not None:
            cell = row.get(plan.label_column)
            if cell is None:
                if labelled:
                    problems.append(
                        Problem(
                            line,
                            plan.label_column,
                            None,
                            "label is empty while other rows are labelled",
                        )
                    )
            else:
                try:
                    _encode_target(plan, cell, "")
                except ManifestError as e:
                    problems.append(Problem(line, plan.label_column, None, str(e).lstrip(": ")))
        for spec in plan.schema.modalities:
            cols = plan.columns[spec.name]
            if spec.name in plan.required and any(row.get(c) is None for c in cols):
                problems.append(
                    Problem(line, cols[0], None, f"required modality {spec.name!r} is empty")
                )
            for col in cols:
                cell = row.get(col)
                if cell is None:
                    continue
                if spec.kind is ModalityKind.TABULAR:
                    try:
                        _number(cell, "")
                    except ManifestError as e:
                        problems.append(Problem(line, col, None, str(e).lstrip(": ")))
                    continue
                file = cell if spec.kind in _FILE_KINDS and isinstance(cell, str) else None
                if file is not None and file.startswith("["):
                    file = None
                try:
                    value, _, _ = _decode_column(spec, cell, base, "")
                except (ValueError, OSError, RuntimeError) as e:
                    problems.append(Problem(line, col, file, _bare(e)))
                    continue
                if isinstance(value, Tensor):
                    problems.extend(_tensor_problems(spec, value, line, col, file))
    problems.sort(key=lambda p: (p.row if p.row is not None else 0, p.column or ""))
    return problems


def _bare(e: BaseException) -> str:
    """An exception's message without the empty ``where`` prefix decoders may add."""
    msg = str(e).strip()
    while msg.startswith(":"):
        msg = msg[1:].strip()
    if isinstance(e, FileNotFoundError) and "not found" not in msg.lower():
        msg = f"file not found: {msg}"
    return msg


def _tensor_problems(
    spec: ModalitySpec, value: Tensor, line: int, col: str, file: str | None
) -> list[Problem]:
    out: list[Problem] = []
    want = _EXPECTED_DIMS.get(spec.kind)
    if spec.kind is ModalityKind.FEATURES:
        want = 2 if spec.sequence else 1
    if want is not None and value.dim() != want:
        out.append(
            Problem(
                line,
                col,
                file,
                f"decoded to shape {tuple(value.shape)} ({value.dim()} dims); a "
                f"{spec.kind.value} value has {want} dims",
            )
        )
        return out
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        n_bad = int((~torch.isfinite(value)).sum())
        out.append(Problem(line, col, file, f"contains {n_bad} NaN/inf value(s)"))
    if spec.shape is not None and _step_shape(spec, value) != spec.shape:
        what = "step shape" if spec.is_sequence else "shape"
        out.append(
            Problem(
                line,
                col,
                file,
                f"{what} {_step_shape(spec, value)} differs from the schema's {spec.shape}",
            )
        )
    return out
