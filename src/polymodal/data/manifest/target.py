"""The target of a manifest: the task its labels imply (only when unambiguous), the classes."""

from __future__ import annotations

import math
from typing import Any

from polymodal.data.manifest.cells import (
    _as_list,
    _as_number,
    _is_int_key,
    _label_key,
    _multilabel_keys,
)
from polymodal.data.manifest.problems import ManifestError, Problem, _show
from polymodal.data.manifest.table import ManifestTable
from polymodal.data.modality import TargetSpec


def _labels(n: int) -> str:
    return "1 label has" if n == 1 else f"{n} labels have"


def _infer_task(
    table: ManifestTable, label_column: str, problems: list[Problem] | None
) -> tuple[str, str]:
    """The task the labels imply, and why; ambiguous labels raise (or are reported).

    * every label a JSON list -> multilabel;
    * no label with a fractional part -> classification (strings and whole numbers name
      classes);
    * every label a finite number and at least half with a fractional part -> regression;
    * anything else (a few fractional numbers among whole ones or strings, lists among
      single labels, NaN/inf among numbers) is ambiguous: the task must be stated.
    """
    cells = [(ln, r.get(label_column)) for r, ln in zip(table.rows, table.lines, strict=True)]
    cells = [(ln, c) for ln, c in cells if c is not None]
    lists = [(ln, c) for ln, c in cells if _as_list(c) is not None]
    numbers = [(ln, c, _as_number(c)) for ln, c in cells]
    fractional = [(ln, c) for ln, c, x in numbers if x is not None and not float(x).is_integer()]
    finite = [(ln, c) for ln, c, x in numbers if x is not None and math.isfinite(x)]
    if lists and len(lists) == len(cells):
        return "multilabel", "inferred: every label is a list"
    if lists:
        singles = [(ln, c) for ln, c in cells if _as_list(c) is None]
        few = lists if len(lists) <= len(singles) else singles
        why = (
            f"{_labels(len(lists))} lists (multilabel?) and {_labels(len(singles))} single "
            f"labels (classification?); the fewer: {_show(few)}"
        )
    elif not fractional:
        return "classification", "inferred: no label has a fractional part"
    elif len(finite) == len(cells) and 2 * len(fractional) >= len(cells):
        return "regression", "inferred: every label is a number, most with a fractional part"
    else:
        frac_rows = {ln for ln, _ in fractional}
        whole = [(ln, c) for ln, c in cells if ln not in frac_rows]
        values = sorted({_label_key(c) for _, c in whole}, key=lambda k: (not _is_int_key(k), k))
        shown = ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")
        few = fractional if len(fractional) <= len(whole) else whole
        why = (
            f"{_labels(len(whole))} no fractional part (classes {shown}: classification?) "
            f"and {_labels(len(fractional))} one (regression?); the fewer: {_show(few)}"
        )
    msg = (
        f"the task of label column {label_column!r} cannot be inferred: {why}. Fix those "
        "labels, or state the task in a schema file (target: {task: classification}, or "
        "regression, or multilabel) and pass it with --schema FILE (datasets check) or "
        "data.schema (a run config)."
    )
    if problems is None:
        raise ManifestError(f"Manifest {str(table.path)!r}: {msg}")
    problems.append(Problem(None, label_column, None, msg))
    return "classification", "ambiguous (reported); checked as classification"


def _resolve_target(
    table: ManifestTable,
    label_column: str | None,
    target: TargetSpec | dict[str, Any] | None,
    problems: list[Problem] | None = None,
) -> tuple[TargetSpec, dict[str, int] | None, str]:
    """The target spec, the class index, and how the task was set."""
    if label_column is None:
        return TargetSpec("classification", 0, (), name=""), None, ""
    values = table.values(label_column)
    num: int | None = None
    names: tuple[str, ...] | None = None
    task: str
    if isinstance(target, TargetSpec):
        task, source = target.task, "stated: the schema"
        names = target.class_names
        num = target.num_classes
    elif target is not None and target.get("task"):
        task, source = str(target["task"]), "stated: the schema's target"
    elif target is not None and (target.get("class_names") or target.get("num_classes")):
        task, source = "classification", "stated: the schema's target names the classes"
        if values and all(_as_list(v) is not None for v in values):
            task = "multilabel"
    else:
        task, source = _infer_task(table, label_column, problems)
    if isinstance(target, dict):
        raw = target.get("class_names")
        names = tuple(str(n) for n in raw) if raw else None
        num = int(target["num_classes"]) if target.get("num_classes") is not None else None
    if task == "regression":
        return TargetSpec("regression", 1, None, name=label_column), None, source
    if names is None and task == "classification" and num is not None:
        # classes given by count only: labels must be the ints 0..num-1
        return TargetSpec("classification", num, None, name=label_column), None, source
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
    return spec, {n: i for i, n in enumerate(names)}, source
