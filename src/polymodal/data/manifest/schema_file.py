"""YAML/JSON schema files: :class:`SchemaFile`, :func:`load_schema_file` and their validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.config import Config, param
from polymodal.data.manifest.problems import ManifestError
from polymodal.data.manifest.table import PathLike
from polymodal.data.modality import ModalitySpec
from polymodal.errors import unknown_name_error

SCHEMA_SUFFIXES = (".yaml", ".yml", ".json")
SCHEMA_KEYS = ("modalities", "target", "columns", "required")


@dataclass(frozen=True, kw_only=True)
class TargetFields(Config):
    """The ``target`` section of a schema file: any fields of a
    :class:`~polymodal.data.modality.TargetSpec` (the rest are inferred from the labels)."""

    task: str | None = None
    num_classes: int | None = param(None, ge=1)
    class_names: tuple[str, ...] | None = None
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class SchemaFile(Config):
    """A parsed schema file: modalities, target fields, column mapping, required modalities.

    ``columns`` maps a modality to its column, or to several columns that form it (a
    modality given by one column may be written as a string).
    """

    modalities: tuple[ModalitySpec, ...]
    target: dict[str, Any] | None = None
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.modalities:
            raise ValueError(
                "'modalities' must be a non-empty list of {name, kind, shape?, sample_rate?, "
                "...} mappings."
            )
        names = [m.name for m in self.modalities]
        for where, listed in (("columns", list(self.columns)), ("required", self.required)):
            for mod in listed:
                if mod not in names:
                    raise ValueError(f"'{where}': {unknown_name_error('modality', mod, names)}")
        for mod, cols in self.columns.items():
            if not cols:
                raise ValueError(f"columns[{mod!r}] must name at least one column.")

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
