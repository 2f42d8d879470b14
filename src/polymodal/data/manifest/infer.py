"""Resolving a manifest to a schema: kind inference, column mapping, the target, the plan."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor

from polymodal.data.decode import inferred_image_shape
from polymodal.data.manifest.cells import (
    _as_list,
    _as_number,
    _column_kind,
    _is_int_key,
    _label_key,
    _multilabel_keys,
)
from polymodal.data.manifest.decoding import _decode_column, _Plan
from polymodal.data.manifest.problems import ManifestError, Problem
from polymodal.data.manifest.schema_file import SchemaFile, load_schema_file
from polymodal.data.manifest.table import ManifestTable, PathLike
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.errors import did_you_mean, unknown_name_error

TABULAR_MODES = ("group", "separate")


def _unknown_column(name: str, available: Sequence[str], what: str) -> str:
    msg = (
        f"{what} names column {name!r}, which the manifest does not have. "
        f"Available columns: {', '.join(available)}."
    )
    return msg + did_you_mean(name, available)


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
    task: str
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
        if spec.kind in (ModalityKind.IMAGE, ModalityKind.VIDEO):
            # Bounded, never the largest: the first image's size scaled down to at most
            # DecodeLimits.inferred_image_side, so no image is upsampled to a huge one.
            return replace(spec, shape=inferred_image_shape(value.shape[-3:]))
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
