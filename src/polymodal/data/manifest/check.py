"""Checking a manifest: :func:`check_manifest` decodes everything and lists ALL problems.

:func:`_check_rows` is the one place that says what is wrong with a row; the data set
(:class:`~polymodal.data.manifest.dataset.ManifestDataset`, what ``train`` and ``predict``
read) runs it on every cell that needs no file, so ``datasets check`` and training refuse
the same cells with the same words.  Only the check also decodes every file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.data.manifest.decoding import (
    _FILE_KINDS,
    _decode_column,
    _decode_text_cell,
    _encode_target,
    _number,
    _Plan,
)
from polymodal.data.manifest.infer import _plan, describe_plan
from polymodal.data.manifest.problems import ManifestError, Problem
from polymodal.data.manifest.schema_file import SchemaFile
from polymodal.data.manifest.table import Cell, ManifestTable, PathLike, read_manifest
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema

log = logging.getLogger(__name__)

_Wrap = Callable[[Iterable[Any]], Iterable[Any]]

#: Without a terminal, one log line every this many rows (at least), or every tenth.
LOG_EVERY_ROWS = 1000


def _step_shape(spec: ModalitySpec, t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape[1:]) if spec.is_sequence else tuple(t.shape)


_EXPECTED_DIMS = {
    ModalityKind.IMAGE: 3,
    ModalityKind.AUDIO: 1,
    ModalityKind.VIDEO: 4,
    ModalityKind.TIMESERIES: 2,
}


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_manifest_report` found.

    Attributes:
        path: the manifest.
        rows: its rows (readable or not).
        description: how it is read, one line per modality, the target and unread columns,
            each saying whether it was inferred or stated (:func:`describe_plan`).
        problems: every problem, sorted by row (:func:`check_manifest`).
    """

    path: Path
    rows: int
    description: tuple[str, ...]
    problems: tuple[Problem, ...]


def check_manifest(
    path: PathLike | ManifestTable,
    schema: Schema | SchemaFile | PathLike | None = None,
    *,
    label_column: str = "label",
    split_column: str = "split",
    id_column: str = "id",
    group_column: str = "group",
    base_dir: PathLike | None = None,
    tabular: str = "group",
    labels: bool = True,
    progress: bool | None = False,
) -> list[Problem]:
    """Decode every row and file of a manifest and return ALL problems, sorted by row.

    Reported: unreadable rows, a manifest without rows, unknown columns named by the
    schema, columns whose kind cannot be inferred (numbers mixed with other values), an
    ambiguous task, missing files, devices and FIFOs, text cells that name files, files
    that fail to decode, NaN/inf numbers or decoded values, wrong ndim or shape, labels
    outside the schema's classes, empty labels among the labelled rows of a split, empty
    cells of ``required`` modalities, duplicate ids.  An empty cell elsewhere is a
    missing modality, not a problem.  Raises only when the manifest or the schema file
    cannot be read at all.

    The reader, the schema resolution and the cell checks are those of
    :class:`ManifestDataset` (what ``train`` and ``predict`` read); only the check also
    decodes every file.  ``labels=False`` leaves the label column unread, as ``predict``
    does.  ``progress``: ``True`` a tqdm bar on stderr, ``None`` a bar on a terminal and
    a log line every tenth of the rows (at least 1000) otherwise, ``False`` nothing.
    """
    return list(
        check_manifest_report(
            path,
            schema,
            label_column=label_column,
            split_column=split_column,
            id_column=id_column,
            group_column=group_column,
            base_dir=base_dir,
            tabular=tabular,
            labels=labels,
            progress=progress,
        ).problems
    )


def check_manifest_report(
    path: PathLike | ManifestTable,
    schema: Schema | SchemaFile | PathLike | None = None,
    *,
    label_column: str = "label",
    split_column: str = "split",
    id_column: str = "id",
    group_column: str = "group",
    base_dir: PathLike | None = None,
    tabular: str = "group",
    labels: bool = True,
    progress: bool | None = False,
) -> CheckReport:
    """:func:`check_manifest`, with how the manifest is read and how many rows it has."""
    table = path if isinstance(path, ManifestTable) else read_manifest(path)
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
        read_labels=labels,
    )
    base = Path(base_dir).expanduser() if base_dir is not None else table.path.parent
    problems += _check_rows(
        plan,
        table.rows,
        table.lines,
        base,
        id_column=id_column,
        split_column=split_column,
        decode_files=True,
        by_split=True,
        progress=_progress(table, progress),
    )
    problems.sort(key=lambda p: (p.row if p.row is not None else 0, p.column or ""))
    n_rows = len(table) + len({p.row for p in table.problems})
    return CheckReport(table.path, n_rows, tuple(describe_plan(plan)), tuple(problems))


def _progress(table: ManifestTable, progress: bool | None) -> _Wrap:
    """Wrap the row loop: a tqdm bar, periodic log lines, or nothing (see check_manifest)."""
    n = len(table.rows)
    on_terminal = sys.stderr.isatty()
    if progress or (progress is None and on_terminal):
        from tqdm.auto import tqdm

        def bar(it: Iterable[Any]) -> Iterator[Any]:
            yield from tqdm(it, total=n, desc=f"checking {table.path.name}", unit="row")

        return bar
    if progress is None:
        every = max(LOG_EVERY_ROWS, -(-n // 10))

        def lines(it: Iterable[Any]) -> Iterator[Any]:
            for i, x in enumerate(it, start=1):
                yield x
                if i % every == 0 and i < n:
                    log.info(
                        "%s: checked %d of %d rows (%d%%)", table.path.name, i, n, 100 * i // n
                    )

        return lines
    return iter


def _check_rows(
    plan: _Plan,
    rows: Sequence[Mapping[str, Cell]],
    lines: Sequence[int],
    base: Path,
    *,
    id_column: str,
    split_column: str,
    decode_files: bool,
    by_split: bool,
    progress: _Wrap = iter,
) -> list[Problem]:
    """Every problem of ``rows``: ids, labels, required cells, numbers, text, inline
    features and, with ``decode_files``, every file.

    An empty label is a problem among labelled rows: those of its split (``by_split``; a
    split without labels is unlabelled data, e.g. rows to predict), or all ``rows``.
    """
    problems: list[Problem] = []
    label = plan.label_column

    def split_of(row: Mapping[str, Cell]) -> Cell:
        return row.get(split_column) if by_split else None

    labelled_splits = (
        {split_of(r) for r in rows if r.get(label) is not None} if label is not None else set()
    )
    seen_ids: dict[str, int] = {}
    for row, line in progress(zip(rows, lines, strict=True)):
        rid = row.get(id_column)
        if rid is not None:
            key = str(rid)
            if key in seen_ids:
                problems.append(
                    Problem(
                        line,
                        id_column,
                        None,
                        f"id {key!r} repeats row {seen_ids[key]}; ids must be unique (rename "
                        "the column if it is not an id, or pass another id column)",
                    )
                )
            else:
                seen_ids[key] = line
        if label is not None:
            cell = row.get(label)
            if cell is None:
                if split_of(row) in labelled_splits:
                    split = split_of(row)
                    where = f" of split {split!r}" if split is not None else ""
                    problems.append(
                        Problem(
                            line,
                            label,
                            None,
                            f"label is empty while other rows{where} are labelled; label it, "
                            "or move it to a split of its own",
                        )
                    )
            else:
                try:
                    _encode_target(plan, cell, "")
                except ManifestError as e:
                    problems.append(Problem(line, label, None, _bare(e)))
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
                problems += _cell_problems(plan, spec, cell, base, line, col, decode_files)
    return problems


def _cell_problems(
    plan: _Plan,
    spec: ModalitySpec,
    cell: Cell,
    base: Path,
    line: int,
    col: str,
    decode_files: bool,
) -> list[Problem]:
    if spec.kind is ModalityKind.TABULAR:
        try:
            _number(cell, "")
        except ManifestError as e:
            return [Problem(line, col, None, _bare(e))]
        return []
    if spec.kind is ModalityKind.TEXT:
        try:
            _decode_text_cell(cell, base, "")
        except ValueError as e:
            return [Problem(line, col, None, _bare(e))]
        return []
    inline = not isinstance(cell, str) or cell.startswith("[")
    if not decode_files and not inline:
        return []
    file = cell if spec.kind in _FILE_KINDS and isinstance(cell, str) and not inline else None
    try:
        value, _, _ = _decode_column(spec, cell, base, "")
    except (ValueError, OSError, RuntimeError) as e:
        return [Problem(line, col, file, _bare(e))]
    if isinstance(value, Tensor):
        return _tensor_problems(spec, value, line, col, file, spec.name in plan.inferred_shapes)
    return []


def _bare(e: BaseException) -> str:
    """An exception's message without the empty ``where`` prefix decoders may add."""
    msg = str(e).strip()
    while msg.startswith(":"):
        msg = msg[1:].strip()
    if isinstance(e, FileNotFoundError) and "not found" not in msg.lower():
        msg = f"file not found: {msg}"
    return msg


def _tensor_problems(
    spec: ModalitySpec, value: Tensor, line: int, col: str, file: str | None, inferred: bool
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
        if inferred:
            than = (
                f"{spec.shape}, the most common shape in the column (fix this row, or state "
                "the modality's shape in a schema file)"
            )
        else:
            than = f"the schema's {spec.shape}"
        out.append(
            Problem(line, col, file, f"{what} {_step_shape(spec, value)} differs from {than}")
        )
    return out
