"""The data set read from a manifest (:class:`ManifestDataset`) and :func:`infer_schema`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from polymodal.data.cache import FeatureCache
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.manifest.check import _check_rows
from polymodal.data.manifest.decoding import _decode_column, _encode_target, _tabular, _where
from polymodal.data.manifest.infer import _plan, describe_plan
from polymodal.data.manifest.problems import ManifestError
from polymodal.data.manifest.schema_file import SchemaFile
from polymodal.data.manifest.table import Cell, PathLike, read_manifest
from polymodal.data.modality import ModalityKind, Schema
from polymodal.data.sample import Sample
from polymodal.errors import unknown_name_error

log = logging.getLogger(__name__)

# (manifest, description) pairs already logged: a run builds its splits from one manifest
# several times, and once is enough to say how it is read.
_DESCRIBED: set[tuple[str, tuple[str, ...]]] = set()


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
        labels: ``False`` leaves the label column unread (targets ``None``), as
            ``polymodal predict`` does: a label the model never saw is not an error there.
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``: the task of the
            label column, instead of the one inferred from its values (``None``: inferred,
            or the schema's); in a run config ``data.options.task``.
        cache_mb: MiB of decoded files (audio, images, video, feature files) kept in memory
            after their first read, least recently used out first, so later epochs skip
            decoding (RAVDESS: ~15 ms a clip); 0 (the default) keeps none.  Each
            DataLoader worker process holds its own cache (and loses it when the loader
            ends its workers), so it pays off with ``num_workers=0`` or persistent workers.
            Files read with time stamps are not cached.

    Every cell that needs no file is checked when the data set is built, with the checks
    of :func:`check_manifest` (labels, numbers, text, inline features, required cells,
    duplicate ids): the first problems raise, naming the rows.  Files are decoded in
    ``__getitem__``, whose errors name the manifest, the row, the column and the file.
    How the columns are read (inferred or stated) is logged at INFO.
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
        labels: bool = True,
        task: str | None = None,
        cache_mb: float = 0.0,
    ) -> None:
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, int | float) or cache_mb < 0:
            raise ValueError(
                f"The 'cache_mb' parameter of ManifestDataset must be a number >= 0 (MiB of "
                f"decoded files kept in memory; 0: none); got {cache_mb!r}."
            )
        self.cache = FeatureCache(int(cache_mb * 2**20))
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
            read_labels=labels,
            task=task,
        )
        described = (str(table.path), tuple(describe_plan(plan)))
        if described not in _DESCRIBED:
            _DESCRIBED.add(described)
            log.info("%s is read as:\n  %s", table.path, "\n  ".join(described[1]))
        rows, lines = list(table.rows), list(table.lines)
        split_values = sorted({str(r[split_column]) for r in rows if r.get(split_column)})
        if split is not None:
            if split_column not in table.columns:
                raise ManifestError(
                    f"Keeping the rows of split {split!r} (--split, or split=) needs a split "
                    f"column, but manifest {str(table.path)!r} has no column {split_column!r} "
                    f"(columns: {', '.join(table.columns)}). Add one, name the split column "
                    "(split_column=..., in a run config data.options.split_column), or keep "
                    "every row (leave out --split; in Python split=None)."
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
        problems = _check_rows(
            plan,
            self._rows,
            self._lines,
            self.base_dir,
            id_column=id_column,
            split_column=split_column,
            decode_files=False,
            by_split=False,
        )
        if problems:
            shown = "\n".join(f"  {p}" for p in problems[:5])
            more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise ManifestError(
                f"Manifest {str(table.path)!r} has {len(problems)} problem(s):\n{shown}{more}\n"
                f"`polymodal datasets check {table.path}` lists them all, and checks every file."
            )
        self._targets = self._encode_targets()

    def _encode_targets(self) -> list[int | float | Tensor | None]:
        plan = self._plan
        if plan.label_column is None:
            return [None] * len(self._rows)
        return [
            _encode_target(
                plan, row.get(plan.label_column), _where(self.path, ln, plan.label_column)
            )
            for row, ln in zip(self._rows, self._lines, strict=True)
        ]

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
            key = f"{index % len(self)}/{spec.name}"
            cached = self.cache.get(key) if self.cache.max_bytes else None
            value: Tensor | str | None
            ts: Tensor | None
            file: str | None
            if cached is not None:
                value, ts, file = cached, None, str(cell)
            else:
                value, ts, file = _decode_column(
                    spec, cell, self.base_dir, _where(self.path, line, cols[0])
                )
                if self.cache.max_bytes and isinstance(value, Tensor) and ts is None and file:
                    self.cache.put(key, value)
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

    Column kinds follow the rules in the package docstring; shapes (and audio sample rates)
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
