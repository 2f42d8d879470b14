"""Training configuration: frozen dataclasses serialised as YAML, with ``key=value`` overrides.

A run is described by one :class:`TrainConfig`::

    name: mosi
    data: {dataset: mosi, options: {features: [text, audio, video]}}
    model: {encoders: {...}, fusion: {name: early}, head: {...}}   # polymodal.models.ModelConfig
    optim: {lr: 1.0e-3, epochs: 10}

:func:`load_config` reads such a file, applies dotted overrides (``optim.lr=3e-4``
``data.options.features=[text,audio]``; values parsed as YAML scalars) and checks every key
and type before anything runs: an unknown key fails with the valid keys at that level and a
close-match suggestion, a wrong type names the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from polymodal.models.config import ModelConfig

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are split and batched.

    Args:
        dataset: a built-in data set name (``polymodal datasets list``); or use ``manifest``.
        manifest: path of a user CSV/JSONL manifest (see ``polymodal.data.manifest``).
        schema: path of a schema YAML/JSON for the manifest (``None``: inferred from it).
        root: folder holding the built-in data set (``None``: ``$POLYMODAL_DATA``, cache).
        options: keyword options of the data set's loader (e.g. ``features: [text, audio]``).
        train_split: split the model is trained on (validation is carved from it);
            ``None`` (manifests only): every row, for a manifest without a split column.
        test_split: split evaluated once at the end with the best weights; ``None``: none.
        val_split: a named validation split (e.g. Flickr8k's ``val``) instead of carving.
        val_fraction: fraction of train's *groups* (speakers, subjects, videos) held out
            for validation when ``val_split`` is ``None``.
        batch_size: examples per optimisation step.
        num_workers: DataLoader worker processes (0: load in the main process).
    """

    dataset: str | None = None
    manifest: str | None = None
    schema: str | None = None
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str | None = "train"
    test_split: str | None = "test"
    val_split: str | None = None
    val_fraction: float = 0.2
    batch_size: int = 32
    num_workers: int = 0

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.manifest is None):
            raise ValueError(
                "data: set exactly one of 'data.dataset' (a built-in data set name) or "
                f"'data.manifest' (a CSV/JSONL path); got dataset={self.dataset!r}, "
                f"manifest={self.manifest!r}."
            )
        if self.train_split is None and self.dataset is not None:
            raise ValueError(
                f"data.train_split=null means every row of a manifest; built-in data set "
                f"{self.dataset!r} needs a split name, e.g. data.train_split=train."
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"data.val_fraction must be in (0, 1), got {self.val_fraction}; e.g. 0.2 holds "
                "out a fifth of the training groups for validation."
            )
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser, schedule and loss.

    Args:
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (never applied to biases and norm weights).
        betas: AdamW betas.
        epochs: maximum passes over the training set.
        max_steps: stop after this many optimisation steps in total (``None``: no cap); the
            schedule spans ``min(epochs * steps_per_epoch, max_steps)`` steps.
        warmup_ratio: fraction of the steps with a linear warmup before cosine decay.
        min_lr_ratio: the cosine ends at ``min_lr_ratio * lr``.
        grad_clip: clip the global gradient norm to this (``None``: no clipping).
        regression_loss: ``"mse"`` or ``"l1"`` for regression tasks.
        aux_loss_weight: weight of an auxiliary loss on each modality's own predictions
            (``modality_logits`` of late/hybrid fusion); 0 disables it.
    """

    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = 20
    max_steps: int | None = None
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    regression_loss: Literal["mse", "l1"] = "mse"
    aux_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.epochs < 1:
            raise ValueError(f"optim.epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"optim.max_steps must be >= 1 or null, got {self.max_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(
                f"optim.grad_clip must be > 0 or null (no clipping), got {self.grad_clip}"
            )
        if self.aux_loss_weight < 0:
            raise ValueError(f"optim.aux_loss_weight must be >= 0, got {self.aux_loss_weight}")


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Args:
        data: :class:`DataConfig`.
        model: :class:`polymodal.models.config.ModelConfig`.
        optim: :class:`OptimConfig`.
        name: the run's name; the default output folder is ``runs/<name>``.
        seed: seeds parameter init, data order, dropout and the validation carve.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; also on CPU).
        monitor: validation metric that selects the best epoch and drives early stopping:
            ``accuracy``, ``macro_f1``, ``auroc`` (classification), ``mae``, ``pearson_r``
            (regression), ``micro_f1``, ``macro_f1`` (multilabel) or ``loss``.
        patience: stop after this many epochs without a better ``monitor`` (``None``: never).
        output_dir: the run folder (``None``: ``runs/<name>``).
        checkpoint_every_steps: also save ``last/`` every this many steps (``None``: at the
            end of each epoch only).
        log_every: steps between progress-bar updates.
        progress: show a tqdm progress bar (only on a terminal).
    """

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    name: str = "run"
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    monitor: str = "accuracy"
    patience: int | None = 5
    output_dir: str | None = None
    checkpoint_every_steps: int | None = None
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.match(self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}"
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(
                f"patience must be >= 1 or null (no early stopping), got {self.patience}"
            )
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise ValueError(
                f"checkpoint_every_steps must be >= 1 or null, got {self.checkpoint_every_steps}"
            )
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ValueError(
                f"name must be a non-empty folder name without slashes, got {self.name!r}"
            )

    @property
    def run_dir(self) -> Path:
        """The run folder: ``output_dir``, or ``runs/<name>``."""
        return Path(self.output_dir) if self.output_dir is not None else Path("runs") / self.name

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (dotted keys allowed: ``replace(**{"optim.lr": 1e-4})``)."""
        d = self.to_dict()
        for key, value in changes.items():
            _set_dotted(d, key, value)
        return TrainConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "model":
                out[f.name] = v.to_dict()
            elif dataclasses.is_dataclass(v) and not isinstance(v, type):
                out[f.name] = _plain(dataclasses.asdict(v))
            else:
                out[f.name] = _plain(v)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain dict, checking every key and type (see :func:`load_config`)."""
        d = _check_mapping(d, "config")
        _check_keys(cls, d, "")
        missing = [k for k in ("data", "model") if k not in d]
        if missing:
            raise ValueError(
                f"The config has no {' or '.join(repr(m) for m in missing)} section; a run needs "
                "'data' (which examples) and 'model' (what to train). See configs/mosi.yaml."
            )
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key == "data":
                kwargs[key] = _dataclass_from_dict(DataConfig, value, "data")
            elif key == "optim":
                kwargs[key] = _dataclass_from_dict(OptimConfig, value, "optim")
            elif key == "model":
                kwargs[key] = _model_from_dict(value)
            else:
                kwargs[key] = _coerce(value, _hints(cls)[key], key)
        return cls(**kwargs)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> TrainConfig:
        return cls.from_dict(_parse_yaml_mapping(text, "config"))


def _model_from_dict(value: Any) -> ModelConfig:
    value = _check_mapping(value, "model")
    try:
        return ModelConfig.from_dict(value)
    except (ValueError, TypeError, KeyError) as e:
        msg = e.args[0] if e.args else str(e)
        raise type(e)(f"model: {msg}") from e


# ------------------------------------------------------------------ checking keys and types


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _label(where: str) -> str:
    """A config key quoted (``'optim'``); a phrase (``Config file 'x.yaml'``) as it is."""
    return where if " " in where else f"'{where}'"


def _check_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{_label(where)} must be a mapping of keys to values, got "
            f"{type(value).__name__} {value!r}."
        )
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{_label(where)} has non-string keys {bad!r}; keys must be names.")
    return dict(value)


def _check_keys(cls: type, d: Mapping[str, Any], where: str) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in d:
        if key not in valid:
            full = f"{where}.{key}" if where else key
            level = f"'{where}'" if where else "the top level"
            msg = f"Unknown config key {full!r}. Valid keys at {level}: {', '.join(valid)}."
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            if close:
                msg += f" Did you mean {close[0]!r}?"
            raise ValueError(msg)


def _dataclass_from_dict(cls: type, value: Any, where: str) -> Any:
    d = _check_mapping(value, where)
    _check_keys(cls, d, where)
    hints = _hints(cls)
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in d.items()})


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _type_error(key: str, tp: Any, value: Any) -> ValueError:
    return ValueError(
        f"Config key {key!r} must be {_type_name(tp)}, got {type(value).__name__} {value!r}. "
        f"Fix the YAML file or override it, e.g. {key}=VALUE."
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints accepted for floats)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _type_error(key, tp, value)
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ValueError:
                continue
        raise _type_error(key, tp, value)
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        msg = f"Config key {key!r} must be one of {list(choices)}, got {value!r}."
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
        if close:
            msg += f" Did you mean {close[0]!r}?"
        raise ValueError(msg)
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads '1e-3' (no dot) as a string.
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(key, tp, value)
    if origin is dict or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise _type_error(key, tp, value)
    if origin is tuple:
        args = get_args(tp)
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == len(args):
            return tuple(
                _coerce(v, a, f"{key}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        raise _type_error(key, tp, value)
    if origin is list:
        (arg,) = get_args(tp)
        if isinstance(value, Sequence) and not isinstance(value, str):
            return [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
        raise _type_error(key, tp, value)
    raise TypeError(f"internal: no rule to check config key {key!r} of type {tp!r}")


def _plain(v: Any) -> Any:
    """Tuples -> lists, recursively, for YAML/JSON."""
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ------------------------------------------------------------------------- overrides


def _parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where} is not valid YAML: {e}") from e
    if data is None:
        data = {}
    return _check_mapping(data, where)


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"optim.lr=3e-4"`` into ``("optim.lr", 0.0003)``; the value is read as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            f"Override {item!r} must look like key=value with a dotted key, e.g. optim.lr=3e-4 "
            "or data.options.features=[text,audio]."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(f"Override {item!r}: the value {raw!r} is not valid YAML ({e}).") from e
    return key, value


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
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
    out = yaml.safe_load(yaml.safe_dump(_plain(dict(d)))) or {}
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(out, key, value)
    return out


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML :class:`TrainConfig`, apply ``key=value`` ``overrides`` and validate it.

    ``name`` defaults to the file's stem (``configs/mosi.yaml`` -> ``mosi``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown key, a wrong type, a bad value or a malformed override.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Config file {str(p)!r} does not exist.")
    d = _parse_yaml_mapping(p.read_text(), f"Config file {str(p)!r}")
    d.setdefault("name", p.stem)
    return TrainConfig.from_dict(apply_overrides(d, overrides))


__all__ = [
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_override",
]
