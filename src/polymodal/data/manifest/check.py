"""Checking a manifest: :func:`check_manifest` decodes everything and lists ALL problems."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from polymodal.data.manifest.decoding import _FILE_KINDS, _decode_column, _encode_target, _number
from polymodal.data.manifest.infer import _plan
from polymodal.data.manifest.problems import ManifestError, Problem
from polymodal.data.manifest.schema_file import SchemaFile
from polymodal.data.manifest.table import PathLike, read_manifest
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema


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
