"""YAML/JSON schema files: :class:`SchemaFile`, :func:`load_schema_file` and their validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.data.manifest.problems import ManifestError
from polymodal.data.manifest.table import PathLike
from polymodal.data.modality import ModalitySpec
from polymodal.registry import unknown_name_error

SCHEMA_SUFFIXES = (".yaml", ".yml", ".json")
SCHEMA_KEYS = ("modalities", "target", "columns", "required")


@dataclass(frozen=True)
class SchemaFile:
    """A parsed schema file: modalities, target fields, column mapping, required modalities."""

    modalities: tuple[ModalitySpec, ...]
    target: dict[str, Any] | None = None
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()


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
