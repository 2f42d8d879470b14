"""Resolving a manifest to a schema: kind inference, column mapping, the target, the plan."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor

from polymodal.data.decode import TimeSeries, decode_file, inferred_image_shape, series_rate
from polymodal.data.manifest.cells import (
    _as_list,
    _as_number,
    _column_kind,
)
from polymodal.data.manifest.decoding import _decode_column, _Plan, _resolve_file
from polymodal.data.manifest.problems import ManifestError, Problem, _show
from polymodal.data.manifest.schema_file import SchemaFile, load_schema_file
from polymodal.data.manifest.table import ManifestTable, PathLike
from polymodal.data.manifest.target import _resolve_target
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.errors import did_you_mean, unknown_name_error

TABULAR_MODES = ("group", "separate")


def _unknown_column(name: str, available: Sequence[str], what: str) -> str:
    msg = (
        f"{what} names column {name!r}, which the manifest does not have. "
        f"Available columns: {', '.join(available)}."
    )
    return msg + did_you_mean(name, available)


_KIND_REASONS = {
    "number": "inferred: every cell is a number",
    "list": "inferred: every cell is a list of numbers",
    "text": "inferred: cells are not numbers, lists or files of a known extension",
    "empty": "inferred: every cell is empty",
}


def _kind_reason(kind: str) -> str:
    return _KIND_REASONS.get(kind, f"inferred: cells are {kind} files, by their extensions")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _ambiguous_column(
    table: ManifestTable, col: str, kind: str, problems: list[Problem] | None
) -> None:
    """Report a column that mixes numbers (or lists) with other values; raise unless collecting.

    The cells named are the minority: typos in a numeric column, or stray numbers in a
    text column.
    """
    want = kind.split(":", 1)[1]  # "number" or "list"
    cells = [(ln, r.get(col)) for r, ln in zip(table.rows, table.lines, strict=True)]
    cells = [(ln, c) for ln, c in cells if c is not None]
    test = _as_number if want == "number" else _as_list
    is_want = [test(c) is not None for _, c in cells]
    n_want = sum(is_want)
    n_other = len(cells) - n_want
    a, plural = ("a number", "numbers") if want == "number" else ("a JSON list", "JSON lists")
    blame_others = n_want >= n_other
    blamed = [lc for lc, w in zip(cells, is_want, strict=True) if w != blame_others]
    fix = (
        f"A column is read as {plural} only if every non-empty cell is {a}. If {col!r} "
        f"holds {plural}, fix or empty the cells that are not; if not, state its kind in a "
        f"schema file (kinds: {{{col}: text}}; or tabular, features, ignore) and pass it "
        "(--schema FILE, or data.schema in a run config)."
    )
    if problems is None:
        raise ManifestError(
            f"Manifest {str(table.path)!r}: column {col!r} mixes {plural} "
            f"({_rows(n_want)}) with other values ({_rows(n_other)}), so its kind cannot be "
            f"inferred; the {'other values' if blame_others else plural}: {_show(blamed)}. " + fix
        )
    for ln, cell in blamed:
        if blame_others:
            what = f"value {cell!r} is not {a}, but the column's {n_want} other values are"
        else:
            what = f"value {cell!r} is {a}, but the column's {n_other} other values are not"
        problems.append(
            Problem(ln, col, None, f"{what}, so the column's kind cannot be inferred. {fix}")
        )


def _infer_modalities(
    table: ManifestTable,
    reserved: set[str],
    tabular: str,
    kinds: Mapping[str, str],
    problems: list[Problem] | None,
) -> tuple[list[ModalitySpec], dict[str, tuple[str, ...]], dict[str, str], dict[str, str]]:
    """Specs, columns, each modality's kind source, and the columns left unread."""
    specs: list[ModalitySpec] = []
    columns: dict[str, tuple[str, ...]] = {}
    sources: dict[str, str] = {}
    numeric: list[str] = []
    numeric_sources: list[str] = []
    unread: dict[str, str] = {}
    for col in kinds:
        msg = None
        if col not in table.columns:
            msg = _unknown_column(col, list(table.columns), "The schema's 'kinds'")
        elif col in reserved:
            msg = (
                f"The schema's 'kinds' names column {col!r}, which is the id, label, split "
                "or group column; only modality columns have kinds."
            )
        if msg is not None:
            if problems is None:
                raise ManifestError(f"Manifest {str(table.path)!r}: {msg}")
            problems.append(Problem(None, col, None, msg))
    for col in table.columns:
        if col in reserved:
            continue
        if col in kinds:
            kind, source = kinds[col], "stated: the schema's kinds"
        else:
            kind = _column_kind(table.values(col))
            source = _kind_reason(kind)
        if kind.startswith("mixed:"):
            msg = (
                f"column {col!r} holds files of several kinds ({kind[6:]}). Put each kind in "
                f"its own column, or state its kind in a schema file (kinds: {{{col}: ...}})."
            )
            if problems is None:
                raise ManifestError(f"Manifest {str(table.path)!r}: {msg}")
            problems.append(Problem(None, col, None, msg))
            unread[col] = "its kind cannot be inferred; see the problems below"
            continue
        if kind.startswith("ambiguous:"):
            _ambiguous_column(table, col, kind, problems)
            unread[col] = "its kind cannot be inferred; see the problems below"
            continue
        if kind == "ignore":
            unread[col] = "the schema's kinds: ignore"
            continue
        if kind in ("number", ModalityKind.TABULAR.value):
            numeric.append(col)
            numeric_sources.append(source)
            if tabular == "separate":
                specs.append(ModalitySpec(col, ModalityKind.TABULAR, shape=(1,)))
                columns[col] = (col,)
                sources[col] = source
            continue
        if kind == "list":
            specs.append(ModalitySpec(col, ModalityKind.FEATURES))
        elif kind in ("text", "empty"):
            specs.append(ModalitySpec(col, ModalityKind.TEXT))
        else:
            specs.append(ModalitySpec(col, ModalityKind(kind)))
        columns[col] = (col,)
        sources[col] = source
    if numeric and tabular == "group":
        name = "tabular"
        while name in columns:
            name = "_" + name
        specs.append(ModalitySpec(name, ModalityKind.TABULAR, shape=(len(numeric),)))
        columns[name] = tuple(numeric)
        stated = set(numeric_sources) - {_KIND_REASONS["number"]}
        sources[name] = (
            _KIND_REASONS["number"] + "; the numeric columns form one vector"
            if not stated
            else "stated by the schema's kinds, or numbers; the numeric columns form one vector"
        )
    return specs, columns, sources, unread


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
        elif spec.columns is not None:  # as the model was trained: by name
            cols = spec.columns
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
        numeric: list[str] = []
        for c in table.columns:
            if c in reserved or c in claimed:
                continue
            kind = _column_kind(table.values(c))
            if kind == "number":
                numeric.append(c)
            elif kind == "ambiguous:number":
                # would it be one of this modality's columns?  Say so rather than drop it
                _ambiguous_column(table, c, kind, problems)
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
        columns[spec.name] = tuple(numeric)
        claimed.update(numeric)
    return kept, columns


#: The tasks a label column can be given (``task=``, ``--task``).
LABEL_TASKS = ("classification", "regression", "multilabel")


def _stated_task(
    target: TargetSpec | dict[str, Any] | None, task: str
) -> TargetSpec | dict[str, Any]:
    """``target`` with its task stated as ``task`` (``task=``, ``--task``)."""
    if task not in LABEL_TASKS:
        raise unknown_name_error("task", task, list(LABEL_TASKS))
    if isinstance(target, TargetSpec):
        if target.task != task:
            raise ManifestError(
                f"task={task!r} (--task) contradicts the schema's target task {target.task!r}; "
                "leave out one of them."
            )
        return target
    return {**(target or {}), "task": task}


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
    read_labels: bool = True,
    task: str | None = None,
) -> _Plan:
    """Resolve ``table`` against ``schema`` (``None``: infer everything).

    With ``problems``, what is wrong is appended there and planning goes on as far as it
    can (``check_manifest``); without, the first problem raises ``ManifestError``.
    ``read_labels=False`` leaves the label column unread (predict), though still reserved.
    ``task`` states the task of the label column, over the inferred one and a schema file's.
    """
    if tabular not in TABULAR_MODES:
        raise unknown_name_error("tabular mode", tabular, list(TABULAR_MODES))
    if schema is not None and not isinstance(schema, Schema | SchemaFile):
        schema = load_schema_file(schema)
    if not table.rows:
        bad = f" ({len(table.problems)} unreadable, listed above)" if table.problems else ""
        msg = f"no rows of data{bad}: a manifest needs a header row and then one row per example."
        if problems is None:
            raise ManifestError(f"Manifest {str(table.path)!r} has {msg}")
        problems.append(Problem(None, None, None, f"{table.path.name!r} has {msg}"))
    target: TargetSpec | dict[str, Any] | None = None
    given: dict[str, tuple[str, ...]] = {}
    required: tuple[str, ...] = ()
    kinds: dict[str, str] = {}
    infer = schema is None
    if isinstance(schema, Schema):
        target = schema.target
    elif isinstance(schema, SchemaFile):
        target = schema.target
        given = dict(schema.columns)
        required = schema.required
        kinds = dict(schema.kinds)
        infer = not schema.modalities
        if schema.target is not None and schema.target.get("name"):
            label_column = str(schema.target["name"])
    if task is not None:
        target = _stated_task(target, task)
    label: str | None = label_column if label_column in table.columns else None
    named_label = (
        isinstance(schema, SchemaFile) and schema.target is not None and schema.target.get("name")
    )
    if label is None and named_label:
        msg = _unknown_column(label_column, list(table.columns), "The schema's target")
        if problems is None:
            raise ManifestError(f"Manifest {str(table.path)!r}: {msg}")
        problems.append(Problem(None, label_column, None, msg))
    if not read_labels:
        label = None
    reserved = {c for c in (label_column, split_column, id_column, group_column) if c}
    if infer:
        specs, columns, sources, unread = _infer_modalities(
            table, reserved, tabular, kinds, problems
        )
    else:
        given_specs = schema.modalities  # type: ignore[union-attr]
        specs, columns = _map_columns(table, given_specs, given, reserved, problems)
        how = "stated: the model's schema" if isinstance(schema, Schema) else "stated: the schema"
        sources = {s.name: how for s in specs}
        used = {c for cols in columns.values() for c in cols}
        unread = {
            c: "the schema does not list it"
            for c in table.columns
            if c not in reserved and c not in used
        }
    if not specs and problems is None:
        raise ManifestError(
            f"Manifest {str(table.path)!r} has no modality columns (columns: "
            f"{', '.join(table.columns)}; reserved for label/split/id/group: "
            f"{', '.join(sorted(reserved))})."
        )
    names = [s.name for s in specs]
    for mod in required:
        if mod not in names:
            msg = f"'required': {unknown_name_error('modality', mod, names)}"
            if problems is None:
                raise ManifestError(f"Schema file: {msg}")
            problems.append(Problem(None, None, None, msg))
    required = tuple(m for m in required if m in names)
    target_spec, class_index, target_source = _resolve_target(table, label, target, problems)
    if not read_labels and isinstance(schema, Schema):
        target_spec = schema.target  # the model's classes, though no label is read
    # a trained model's schema is what the data must match: nothing in it is inferred
    fill = not isinstance(schema, Schema)
    shaped = [_with_shape(s, columns[s.name], table, fill) for s in specs]
    inferred = frozenset(s.name for s, t in zip(specs, shaped, strict=True) if s.shape != t.shape)
    recorded = [s if s.columns else replace(s, columns=columns[s.name]) for s in shaped]
    return _Plan(
        Schema(tuple(recorded), target_spec),
        columns,
        label,
        class_index,
        required,
        sources=sources,
        target_source=target_source,
        unread=unread,
        inferred_shapes=inferred,
    )


#: Files decoded at most to infer a modality's shape; the most common shape wins, so one
#: odd (or broken) first file does not set the shape every other row is held to.
SHAPE_SAMPLE = 3


def _list_shape(lst: list[Any]) -> tuple[tuple[int, ...], bool]:
    """The (shape, is_sequence) of an inline feature list, without building a tensor."""
    if lst and isinstance(lst[0], list):
        return (len(lst[0]),), True
    return (len(lst),), False


def _with_shape(
    spec: ModalitySpec, cols: tuple[str, ...], table: ManifestTable, fill: bool = True
) -> ModalitySpec:
    """Fill in a missing ``shape`` (and audio ``sample_rate``) from the data.

    Collate needs the shape to zero-fill a batch in which the modality is missing
    everywhere.  The shape is the most common one among every inline feature list and the
    first :data:`SHAPE_SAMPLE` files that decode (files that fail are skipped: the check
    reports them), so a bad first row does not make every good row look wrong.  With
    ``fill``, a time series' unset ``channels``, ``time_unit``, ``sample_rate`` and
    ``length`` are inferred too (:func:`_with_series_fields`).
    """
    if spec.kind is ModalityKind.TEXT:
        return spec
    if spec.kind is ModalityKind.TIMESERIES and fill:
        return _with_series_fields(spec, cols[0], table)
    if spec.kind is ModalityKind.TABULAR:
        return spec if spec.shape is not None else replace(spec, shape=(len(cols),))
    if spec.shape is not None and (spec.kind is not ModalityKind.AUDIO or spec.sample_rate):
        return spec
    seen: Counter[tuple[tuple[int, ...], bool]] = Counter()
    rate: float | None = None
    decoded, failed = 0, 0
    # audio has no shape to vote on, and a video can take seconds to decode: one of each
    sample = 1 if spec.kind in (ModalityKind.AUDIO, ModalityKind.VIDEO) else SHAPE_SAMPLE
    for row in table.rows:
        cell = row.get(cols[0])
        if cell is None:
            continue
        inline = _as_list(cell) if spec.kind is ModalityKind.FEATURES else None
        if inline is not None:
            seen[_list_shape(inline)] += 1
            continue
        if decoded >= sample or failed >= 4 * SHAPE_SAMPLE:
            if spec.kind is ModalityKind.FEATURES:
                continue  # inline lists further down still count
            break
        try:
            value, _, _ = _decode_column(spec, cell, table.path.parent, where="")
        except (ValueError, OSError, RuntimeError):
            failed += 1
            continue
        if not isinstance(value, Tensor):
            failed += 1
            continue
        decoded += 1
        if spec.kind is ModalityKind.AUDIO:
            rate = rate or _audio_rate(Path(str(cell)), table.path.parent)
            seen[((), False)] += 1
        elif spec.kind is ModalityKind.IMAGE:
            seen[(tuple(value.shape), False)] += 1
        elif spec.kind is ModalityKind.FEATURES:
            seq = value.dim() == 2
            seen[(tuple(value.shape[1:] if seq else value.shape), seq)] += 1
        else:
            seen[(tuple(value.shape[1:]), False)] += 1
    if not seen:
        return spec
    (shape, seq), _ = seen.most_common(1)[0]  # ties: the first seen
    if spec.kind is ModalityKind.AUDIO:
        return replace(spec, shape=(), sample_rate=spec.sample_rate or rate)
    if spec.kind is ModalityKind.FEATURES:
        return replace(spec, shape=shape, sequence=seq)
    if spec.kind in (ModalityKind.IMAGE, ModalityKind.VIDEO):
        # Bounded, never the largest: the common size scaled down to at most
        # DecodeLimits.inferred_image_side, so no image is upsampled to a huge one.
        return replace(spec, shape=inferred_image_shape(shape))
    return replace(spec, shape=shape)


def _with_series_fields(spec: ModalitySpec, col: str, table: ManifestTable) -> ModalitySpec:
    """A time series' spec with what predict must match filled in from the first files.

    Of the first :data:`SHAPE_SAMPLE` files that decode: ``channels`` are the most common
    list of numeric columns (every one but ``timestamp``, in file order), ``sample_rate`` the
    median of the rates their timestamps imply, ``time_unit`` ``"ms"``, and ``length``
    their number of rows when they all have the same (fixed-length windows).  Fields the
    spec states are kept, and the files are read with them.
    """
    probe = replace(spec, length=None)
    seen: Counter[tuple[str, ...]] = Counter()
    lengths: list[int] = []
    rates: list[float] = []
    failed = 0
    for row in table.rows:
        cell = row.get(col)
        if cell is None or not isinstance(cell, str):
            continue
        if len(lengths) >= SHAPE_SAMPLE or failed >= 4 * SHAPE_SAMPLE:
            break
        try:
            ts = decode_file(_resolve_file(cell, table.path.parent), spec.kind, probe)
        except (ValueError, OSError, RuntimeError):
            failed += 1
            continue
        if not isinstance(ts, TimeSeries):  # pragma: no cover - the decoder's contract
            failed += 1
            continue
        seen[tuple(ts.columns)] += 1
        lengths.append(int(ts.values.shape[0]))
        rate = series_rate(ts)
        if rate is not None:
            rates.append(rate)
    if not seen:
        return spec
    channels = spec.channels or seen.most_common(1)[0][0]  # ties: the first seen
    rate = spec.sample_rate
    if rate is None and rates:
        rate = float(round(statistics.median(rates), 6))
    same = len(set(lengths)) == 1
    return replace(
        spec,
        channels=channels,
        shape=spec.shape or (len(channels),),
        time_unit=spec.time_unit or "ms",
        sample_rate=rate,
        length=spec.length or (lengths[0] if same else None),
    )


def _audio_rate(path: Path, base: Path) -> float | None:
    p = path if path.is_absolute() else base / path
    try:
        import soundfile

        return float(soundfile.info(str(p)).samplerate)
    except Exception:  # not a soundfile-readable container (e.g. mp3 via av); rate unknown
        return None


def describe_plan(plan: _Plan) -> list[str]:
    """How a manifest is read, one line per modality, the target and unread columns, each
    saying whether it was inferred (and from what) or stated by a schema."""
    out: list[str] = []
    for spec in plan.schema.modalities:
        cols = plan.columns[spec.name]
        src = ", ".join(repr(c) for c in cols)
        what = spec.kind.value
        if spec.kind in (ModalityKind.TABULAR, ModalityKind.FEATURES) and spec.shape is not None:
            what += f" {spec.shape}" + (" per step" if spec.is_sequence else "")
        if spec.kind is ModalityKind.AUDIO and spec.sample_rate:
            what += f" {spec.sample_rate:g} Hz"
        if spec.kind is ModalityKind.IMAGE and spec.shape is not None and len(spec.shape) == 3:
            what += f" resized to {spec.shape[1]}x{spec.shape[2]}"
        if spec.kind is ModalityKind.TIMESERIES:
            what += _series_description(spec)
        column = "columns" if len(cols) > 1 else "column"
        how = plan.sources.get(spec.name, "")
        out.append(f"modality {spec.name!r}: {what} <- {column} {src} ({how})")
    t = plan.schema.target
    if plan.label_column is None:
        out.append("target: none (no label column: unlabelled data)")
    else:
        unit = "label" if t.task == "multilabel" else "class"
        if t.task == "regression":
            what = "regression"
        elif not t.num_classes:
            what = f"{t.task}, no {unit} found"
        else:
            names = ", ".join(t.class_names) if t.class_names else f"0..{t.num_classes - 1}"
            plural = unit if t.num_classes == 1 else ("labels" if unit == "label" else "classes")
            what = f"{t.task}, {t.num_classes} {plural} ({names})"
        out.append(f"target: {what} <- column {plan.label_column!r} ({plan.target_source})")
    for col, why in plan.unread.items():
        out.append(f"column {col!r}: not read ({why})")
    return out


def _series_description(spec: ModalitySpec) -> str:
    """`` (3,) channels ax, ay, az, 100 Hz (timestamps in ms), windows of 50 rows``."""
    parts = []
    if spec.channels is not None:
        parts.append("channels " + ", ".join(spec.channels))
    elif spec.shape is not None:
        parts.append(f"{spec.shape[0]} channels by position" if spec.shape else "")
    if spec.sample_rate is not None:
        parts.append(f"{spec.sample_rate:g} Hz")
    parts.append(f"timestamps in {spec.time_unit or 'ms'}")
    if spec.length is not None:
        parts.append(f"windows of {spec.length} rows")
    return " " + ", ".join(p for p in parts if p)
