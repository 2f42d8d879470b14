"""The one config mechanism: frozen dataclasses <-> plain data (YAML/JSON), checked by type.

Every config in polymodal (a run, its data, its model, its optimiser, a joint space, a
pair set, a modality spec) is a frozen dataclass that inherits :class:`Config`.  The
dataclass *is* the schema: its type hints decide how a YAML value is coerced, its defaults
are written once, and :func:`param` attaches a numeric range::

    @dataclass(frozen=True, kw_only=True)
    class OptimConfig(Config):
        lr: float = param(1e-3, gt=0)          # learning rate
        epochs: int = param(20, ge=1)

    OptimConfig.from_dict({"lr": "3e-4"})      # YAML 1.1 reads 3e-4 as a string: coerced
    OptimConfig.from_dict({"lrr": 1})          # ValueError: Unknown config key 'lrr'. ...
    OptimConfig(lr=float("nan"))               # ValueError: ... must be a finite number

What is checked, here and nowhere else:

- **keys**: an unknown key fails listing the valid keys at its level, with a did-you-mean
  suggestion (:func:`polymodal.errors.did_you_mean`); a missing required key names itself;
- **types**, by type hint: ``bool`` (never 0/1), ``int`` (never a bool; ``2.0`` is 2),
  ``float`` (ints and numeric strings accepted), ``str``, ``Literal[...]`` choices,
  ``StrEnum`` members, ``X | None``, ``tuple[...]``, ``list[X]``, ``dict[str, X]``, nested
  configs, and ``Any`` (plain YAML data only: str, int, float, bool, null, lists, maps);
- **numbers**: NaN and infinity are refused everywhere (:class:`NotFiniteError`, a
  ``ValueError`` naming the key and the value, also for ``optim.lr=inf`` or
  ``optim.grad_clip=nan`` given as overrides); :func:`param` ranges
  (``ge``/``gt``/``le``/``lt``) apply to a number, or to every number of a list or map.

Checks run both when a config is built from data (:meth:`Config.from_dict`, with dotted key
names in messages) and when it is constructed in Python (``__post_init__``), so a config
object that exists is a valid one.  ``key=value`` overrides (:func:`apply_overrides`) set
dotted keys with values read as YAML: ``optim.lr=3e-4 data.options.modalities=[text,audio]``.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, Union, cast, get_args, get_origin, get_type_hints

import yaml

from polymodal.errors import did_you_mean

_RANGE = "polymodal.range"


@dataclass(frozen=True)
class Range:
    """Bounds on a number (``None``: unbounded on that side)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        parts = [
            f"{op} {bound:g}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(parts)

    def holds(self, x: float) -> bool:
        return (
            (self.ge is None or x >= self.ge)
            and (self.gt is None or x > self.gt)
            and (self.le is None or x <= self.le)
            and (self.lt is None or x < self.lt)
        )


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with a numeric range, checked with the field's type.

    ``param(0.1, ge=0, lt=1)`` accepts 0 <= x < 1; on a ``list``/``dict`` field the range
    applies to each number in it.
    """
    metadata = {_RANGE: Range(ge=ge, gt=gt, le=le, lt=lt)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# --------------------------------------------------------------------------- messages


def _label(where: str) -> str:
    """A config key quoted (``'optim'``); a phrase (``Config file 'x.yaml'``) as it is."""
    return where if " " in where else f"'{where}'"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Config):
        return f"a mapping ({tp.__name__})"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _type_error(key: str, tp: Any, value: Any) -> ValueError:
    return ValueError(
        f"Config key {key!r} must be {_type_name(tp)}, got {type(value).__name__} {value!r}. "
        f"Fix the YAML file or override it, e.g. {key}=VALUE."
    )


def check_mapping(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a dict with string keys, else a ``ValueError`` naming ``where``."""
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{_label(where)} must be a mapping of keys to values, got "
            f"{type(value).__name__} {value!r}."
        )
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{_label(where)} has non-string keys {bad!r}; keys must be names.")
    return dict(value)


def unknown_key_error(key: str, valid: Sequence[str], where: str) -> ValueError:
    """The message of an unknown config key: the valid keys at its level and a suggestion."""
    level = _label(where) if where else "the top level"
    return ValueError(
        f"Unknown config key {_join(where, key)!r}. Valid keys at {level}: "
        f"{', '.join(valid)}." + did_you_mean(key, valid)
    )


# --------------------------------------------------------------------------- coercion


class NotFiniteError(ValueError):
    """A NaN or infinite number in a config (a ``ValueError`` naming the key and the value).

    Its own class so that in a union (``float | None``) it is reported as such, not as
    "must be float or null".
    """


def _finite(x: float, key: str) -> float:
    if not math.isfinite(x):
        raise NotFiniteError(
            f"Config key {key!r} must be a finite number, got {x!r}. NaN and infinity are "
            "refused everywhere in a config."
        )
    return x


def plain(value: Any, key: str) -> Any:
    """``value`` as YAML-plain data (tuples become lists), else a ``ValueError`` at ``key``."""
    if isinstance(value, enum.Enum):  # before str: a StrEnum is a str
        return value.value
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return _finite(value, key)
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"Config key {key!r} has a non-string key {k!r}.")
            out[k] = plain(v, _join(key, k))
        return out
    raise ValueError(
        f"Config key {key!r} must hold plain data (str, int, float, bool, null, lists, "
        f"mappings), got {type(value).__name__} {value!r}."
    )


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the type hint ``tp`` and converted where that is lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return plain(value, key)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _type_error(key, tp, value)
        arms = [a for a in args if a is not type(None)]
        fitting = [a for a in arms if _fits(value, a)]
        if len(fitting) == 1:
            return coerce(value, fitting[0], key)  # its own error is the informative one
        not_finite: NotFiniteError | None = None
        for a in arms:
            try:
                return coerce(value, a, key)
            except NotFiniteError as e:  # e.g. 'nan' from a key=value override, on float | None
                not_finite = not_finite or e
            except ValueError:
                continue
        if not_finite is not None:
            raise not_finite
        raise _type_error(key, tp, value)
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed and not isinstance(value, bool):
            return value
        raise ValueError(
            f"Config key {key!r} must be one of {list(allowed)}, got {value!r}."
            + did_you_mean(value, allowed)
        )
    if _is_config(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Config) and issubclass(tp, type(value)):
            # a base config where a subclass is expected (OptimConfig for a task's own
            # optim): its fields carry over, the subclass's extra fields keep their defaults
            return tp.from_dict(value.to_dict(), key)
        return tp.from_dict(value, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            choices = [m.value for m in tp]
            raise ValueError(
                f"Config key {key!r} must be one of {choices}, got {value!r}."
                + did_you_mean(value, choices)
            ) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _type_error(key, tp, value)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _finite(float(value), key)
        if isinstance(value, str):
            try:  # YAML 1.1 reads '1e-3' (no dot) as a string
                number = float(value)
            except ValueError:
                pass
            else:
                return _finite(number, key)
        raise _type_error(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(key, tp, value)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, tp, value)
        args = get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {k: coerce(v, item, _join(key, k)) for k, v in check_mapping(value, key).items()}
    if origin is tuple or tp is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise _type_error(key, tp, value)
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if not args:
            return tuple(plain(v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _type_error(key, tp, value)
        return tuple(
            coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is list or tp is list:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise _type_error(key, tp, value)
        args = get_args(tp)
        item = args[0] if args else Any
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError(f"internal: no rule to check config key {key!r} of type {tp!r}")


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` has the Python type that ``tp`` describes (not yet checked)."""
    origin = get_origin(tp) or tp
    if _is_config(tp) or origin is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple):
        return isinstance(value, Sequence) and not isinstance(value, str)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    return False


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Config)


def _check_range(value: Any, rng: Range, key: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if not rng.holds(value):
            raise ValueError(f"Config key {key!r} must be {rng.describe()}, got {value!r}.")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_range(v, rng, _join(key, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_range(v, rng, f"{key}[{i}]")


# --------------------------------------------------------------------------- the base class

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


class Config:
    """Base of every config: a frozen dataclass that round-trips through plain data.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)``; cross-field checks go in a
    ``__post_init__`` that calls ``super().__post_init__()`` first (which has already
    coerced and range-checked every field).
    """

    #: Shown after "missing required key" errors: where to find an example.
    example: ClassVar[str] = ""
    #: Keys this section used to have -> where they went (shown instead of "unknown").
    moved: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        owner = type(self).__name__
        for f in dataclasses.fields(cast(Any, self)):
            if not f.init:
                continue
            key = f"{owner}.{f.name}"
            value = coerce(getattr(self, f.name), hints[f.name], key)
            rng = f.metadata.get(_RANGE)
            if rng is not None:
                _check_range(value, rng, key)
            object.__setattr__(self, f.name, value)

    # ---------------------------------------------------------------- plain data

    @classmethod
    def keys(cls) -> list[str]:
        """The keys a mapping for this config may hold."""
        return [f.name for f in dataclasses.fields(cast(Any, cls)) if f.init]

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        """Build from plain data, checking every key, type and range (see the module).

        Args:
            data: a mapping of keys to plain values.
            where: the dotted key of this section, for messages (``""`` at the top).

        Raises:
            ValueError: an unknown or missing key, a wrong type, a value out of range.
        """
        d = check_mapping(data, where or "config")
        d = cls._prepare(d, where)
        fields = {f.name: f for f in dataclasses.fields(cast(Any, cls)) if f.init}
        valid = list(fields)
        for key in d:
            if key in cls.moved and key not in fields:
                raise ValueError(
                    f"Config key {_join(where, key)!r} is no longer here: {cls.moved[key]}."
                )
            if key not in fields:
                raise unknown_key_error(key, valid, where)
        missing = [
            name
            for name, f in fields.items()
            if name not in d
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            section = f"Config section {_label(where)}" if where else "The config"
            raise ValueError(
                f"{section} is missing the required key(s) {', '.join(map(repr, missing))}; "
                f"valid keys: {', '.join(valid)}." + (f" {cls.example}" if cls.example else "")
            )
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            full = _join(where, key)
            kwargs[key] = coerce(value, hints[key], full)
            rng = fields[key].metadata.get(_RANGE)
            if rng is not None:
                _check_range(kwargs[key], rng, full)
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as e:
            msg = str(e.args[0]) if e.args else str(e)
            if where and not msg.startswith(where) and f"'{where}" not in msg:
                msg = f"{_label(where)}: {msg}"
            raise type(e)(msg) from e

    @classmethod
    def _prepare(cls, d: dict[str, Any], where: str) -> dict[str, Any]:
        """Hook: rewrite a section's plain data before it is checked (default: as is)."""
        return d

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples; enum values) that :meth:`from_dict` inverts."""
        return {
            f.name: plain(getattr(self, f.name), f.name)
            for f in dataclasses.fields(cast(Any, self))
            if f.init
        }

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The config as YAML text; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> Self:
        """Parse YAML: text, or a file (a path object, or one line ending in .yaml/.yml)."""
        if isinstance(source, os.PathLike) or (
            "\n" not in source and source.endswith((".yaml", ".yml"))
        ):
            return cls.load(source)
        return cls.from_dict(parse_yaml_mapping(source, "config"))

    @classmethod
    def load(cls, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Self:
        """Read a YAML file, apply ``key=value`` ``overrides`` and validate.

        A config with a ``name`` key gets the file's stem as its default name.
        """
        named = "name" in cls.keys()  # noqa: SIM118 - Config.keys() is a list of field names
        return cls.from_dict(read_config_file(path, overrides, default_name=named))

    def replace(self, **changes: Any) -> Self:
        """A checked copy with ``changes``; dotted keys reach into sections::

        cfg.replace(**{"optim.lr": 1e-4, "model.fusion.name": "late"})
        """
        d = self.to_dict()
        for key, value in changes.items():
            set_dotted(d, key, plain(value, key))
        return type(self).from_dict(d)


# --------------------------------------------------------------------------- YAML and overrides


def parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """YAML text that must hold a mapping (an empty document is ``{}``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where} is not valid YAML: {e}") from e
    return check_mapping({} if data is None else data, where)


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"optim.lr=3e-4"`` into ``("optim.lr", 0.0003)``; the value is read as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            f"Override {item!r} must look like key=value with a dotted key, e.g. optim.lr=3e-4 "
            "or data.options.modalities=[text,audio]."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(f"Override {item!r}: the value {raw!r} is not valid YAML ({e}).") from e
    return key, value


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set ``d[a][b][c] = value`` for ``key="a.b.c"``, creating missing sections."""
    parts = key.split(".")
    if any(not p for p in parts):
        raise ValueError(f"Override key {key!r} has an empty part; use e.g. optim.lr=3e-4.")
    node = d
    for i, p in enumerate(parts[:-1]):
        child = node.get(p)
        if child is None:
            child = {}
            node[p] = child
        elif not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ValueError(
                f"Override {key!r}: {prefix!r} is a value ({child!r}), not a section with keys."
            )
        node = child
    node[parts[-1]] = value


def apply_overrides(d: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``d`` with each ``key=value`` of ``overrides`` set."""
    out: dict[str, Any] = copy.deepcopy(plain(dict(d), "config"))
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(out, key, value)
    return out


def read_config_file(
    path: str | os.PathLike[str], overrides: Sequence[str] = (), default_name: bool = True
) -> dict[str, Any]:
    """A YAML config file as plain data, with ``overrides`` applied.

    ``default_name``: set ``name`` to the file's stem when the file has none
    (``configs/mosi.yaml`` -> ``mosi``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not YAML, not a mapping, or a malformed override.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Config file {str(p)!r} does not exist.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"Config file {str(p)!r} is not UTF-8 text (byte {e.start}: {e.reason}); it is not a "
            "YAML config, or it was damaged. Check the path, or save the file as UTF-8."
        ) from None
    d = parse_yaml_mapping(text, f"Config file {str(p)!r}")
    if default_name:
        d.setdefault("name", p.stem)
    return apply_overrides(d, overrides)


__all__ = [
    "Config",
    "NotFiniteError",
    "Range",
    "apply_overrides",
    "check_mapping",
    "coerce",
    "param",
    "parse_override",
    "parse_yaml_mapping",
    "plain",
    "read_config_file",
    "set_dotted",
    "unknown_key_error",
]
