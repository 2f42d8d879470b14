"""YAML/JSON schema files: :class:`SchemaFile`, :func:`load_schema_file` and their validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.config import Config, param
from polymodal.data.manifest.problems import ManifestError
from polymodal.data.manifest.table import PathLike
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.errors import unknown_name_error

SCHEMA_SUFFIXES = (".yaml", ".yml", ".json")
SCHEMA_KEYS = ("modalities", "kinds", "target", "columns", "required")
#: What ``kinds`` may give a column: a modality kind, or ``ignore`` (the column is not read).
COLUMN_KINDS = (*(k.value for k in ModalityKind), "ignore")
#: The tasks a schema file's target may state.
SCHEMA_TASKS = ("classification", "regression", "multilabel")


@dataclass(frozen=True, kw_only=True)
class TargetFields(Config):
    """The ``target`` section of a schema file: any fields of a
    :class:`~polymodal.data.modality.TargetSpec` (the rest are inferred from the labels)."""

    task: str | None = None  # one of SCHEMA_TASKS; None: inferred from the labels
    num_classes: int | None = param(None, ge=1)
    class_names: tuple[str, ...] | None = None
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class SchemaFile(Config):
    """A parsed schema file: modalities or column kinds, target fields, column mapping,
    required modalities.

    ``modalities`` lists every modality the data set has (the other columns are not read);
    ``columns`` maps a modality to its column, or to several columns that form it (a
    modality given by one column may be written as a string).  Without ``modalities``,
    kinds are inferred as with no schema, except for the columns ``kinds`` names
    (``{age: tabular, notes: text, junk: ignore}``); ``target`` alone states the task.
    """

    modalities: tuple[ModalitySpec, ...] = ()
    kinds: dict[str, str] = field(default_factory=dict)
    target: dict[str, Any] | None = None
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.modalities and not self.kinds and self.target is None:
            raise ValueError(
                "a schema file needs 'modalities' (a list of {name, kind, shape?, "
                "sample_rate?, ...}), 'kinds' (column -> kind, the rest inferred) or "
                "'target' (e.g. {task: regression})."
            )
        if self.modalities and self.kinds:
            raise ValueError(
                "give 'modalities' (every modality, spelled out) or 'kinds' (the kinds of "
                "some columns, the rest inferred), not both."
            )
        for col, kind in self.kinds.items():
            if kind not in COLUMN_KINDS:
                raise ValueError(f"'kinds.{col}': {unknown_name_error('kind', kind, COLUMN_KINDS)}")
        if self.columns and not self.modalities:
            raise ValueError(
                "'columns' maps the modalities listed under 'modalities'; without them, "
                "each column is its own modality (state kinds with 'kinds')."
            )
        task = (self.target or {}).get("task")
        if task is not None and task not in SCHEMA_TASKS:
            raise ValueError(f"'target.task': {unknown_name_error('task', task, SCHEMA_TASKS)}")
        names = [m.name for m in self.modalities]
        listed = [("columns", list(self.columns))]
        if self.modalities:  # inferred modalities: 'required' is checked against them later
            listed.append(("required", list(self.required)))
        for where, mods in listed:
            for mod in mods:
                if mod not in names:
                    raise ValueError(f"'{where}': {unknown_name_error('modality', mod, names)}")
        for mod, cols in self.columns.items():
            if not cols:
                raise ValueError(f"columns[{mod!r}] must name at least one column.")
        for m in self.modalities:
            if m.columns is not None and m.name in self.columns:
                raise ValueError(
                    f"modality {m.name!r} states its columns {list(m.columns)} and 'columns' "
                    f"maps it to {list(self.columns[m.name])}; give them in one place."
                )

    @classmethod
    def _prepare(cls, d: dict[str, Any], where: str) -> dict[str, Any]:
        d = dict(d)
        if isinstance(d.get("columns"), dict):
            d["columns"] = {m: [c] if isinstance(c, str) else c for m, c in d["columns"].items()}
        if d.get("target") is not None:
            fields = TargetFields.from_dict(d["target"], "target").to_dict()
            d["target"] = {k: v for k, v in fields.items() if v is not None}
        return d


def load_schema_file(path: PathLike) -> SchemaFile:
    """Read a YAML/JSON schema file (see the package docstring for its layout)."""
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
    try:
        return SchemaFile.from_dict(data)
    except ValueError as e:
        raise ManifestError(f"Schema file {where!r}: {e}") from None
