"""Model architecture as data: frozen dataclasses, their YAML form, and :func:`build_model`.

A YAML model config is :class:`ModelConfig` serialised::

    encoders:
      audio: {name: audio_cnn, params: {dim: 64}}
      text: {name: text_transformer, params: {}}
    fusion: {name: late, params: {combine: learned}}
    head: {hidden_dim: 0, dropout: 0.0}
    modality_dropout: {audio: 0.2}

Unknown keys fail fast with the valid keys and a suggestion; values of the wrong type fail
naming the key.  :func:`build_model` checks every encoder's and the fusion's ``params``
against its builder's signature before building anything.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from torch import nn

from polymodal.data.modality import ModalitySpec, Schema
from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.fusion.base import FUSIONS, Fusion
from polymodal.layers.mlp import MLP
from polymodal.models.multimodal import MultimodalModel

C = TypeVar("C")

# --------------------------------------------------------------------------- checks


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_keys(where: str, d: object, valid: list[str], required: tuple[str, ...] = ()) -> None:
    """``d`` must be a mapping whose keys are among ``valid`` and include ``required``."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {valid}, got {type(d).__name__}.")
    for key in d:
        if key not in valid:
            raise ValueError(
                f"Unknown key {key!r} in {where}; valid keys: {', '.join(valid)}."
                + _suggest(str(key), valid)
            )
    for key in required:
        if key not in d:
            raise ValueError(f"{where} is missing the required key {key!r}.")


def _type_error(where: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{where} must be {expected}, got {value!r} ({type(value).__name__}).")


def _check_str(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _type_error(where, "a non-empty str", value)
    return value


def _check_int(where: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _type_error(where, f"an int >= {minimum}", value)
    return value


def _check_prob(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise _type_error(where, "a float in [0, 1)", value)
    return float(value)


def _plain(where: str, value: object) -> Any:
    """``value`` as YAML-plain data (tuples become lists), else a ValueError naming ``where``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _type_error(f"{where} key", "a str", k)
            out[k] = _plain(f"{where}.{k}", v)
        return out
    raise _type_error(where, "plain config data (str, int, float, bool, None, list, dict)", value)


def _params(where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _type_error(where, "a mapping of parameter name -> value", value)
    return cast(dict[str, Any], _plain(where, value))


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class EncoderConfig:
    """One modality's encoder.

    Args:
        name: a registered encoder (``polymodal list encoders``).
        params: keyword arguments of its builder (``dim`` included); the modality spec is
            passed automatically.  Plain data only (tuples are stored as lists).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_str("EncoderConfig.name", self.name)
        object.__setattr__(self, "params", _params("EncoderConfig.params", self.params))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": _plain("params", self.params)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "encoder config") -> EncoderConfig:
        _check_keys(where, d, _field_names(cls), required=("name",))
        return _construct(cls, where, d)


@dataclass(frozen=True)
class FusionConfig:
    """The fusion strategy.

    Args:
        name: a registered fusion (``polymodal list fusions``).
        params: keyword arguments of its builder; ``in_dims`` and ``num_outputs`` are wired
            automatically from the encoders and the schema's target.
    """

    name: str = "early"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_str("FusionConfig.name", self.name)
        object.__setattr__(self, "params", _params("FusionConfig.params", self.params))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": _plain("params", self.params)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "fusion config") -> FusionConfig:
        _check_keys(where, d, _field_names(cls))
        return _construct(cls, where, d)


@dataclass(frozen=True)
class HeadConfig:
    """The prediction head after a feature-level fusion.

    Args:
        hidden_dim: 0 for a linear head, else the width of one hidden GELU layer.
        dropout: dropout probability on the head's input (and hidden layer).
    """

    hidden_dim: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_int("HeadConfig.hidden_dim", self.hidden_dim)
        object.__setattr__(self, "dropout", _check_prob("HeadConfig.dropout", self.dropout))

    def to_dict(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "head config") -> HeadConfig:
        _check_keys(where, d, _field_names(cls))
        return _construct(cls, where, d)


@dataclass(frozen=True)
class ModelConfig:
    """A whole multimodal model: encoders per modality, fusion, head, modality dropout.

    Args:
        encoders: modality name -> :class:`EncoderConfig`; the modalities the model uses
            (a subset of the data set's schema).
        fusion: the :class:`FusionConfig`.
        head: the :class:`HeadConfig`; must stay at its defaults for decision-level fusion,
            which predicts by itself.
        modality_dropout: modality name -> probability in [0, 1) of hiding that modality
            from a training example (see :meth:`MultimodalModel.drop_modalities`).
    """

    encoders: dict[str, EncoderConfig]
    fusion: FusionConfig = field(default_factory=FusionConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    modality_dropout: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.encoders, Mapping) or not self.encoders:
            raise _type_error(
                "ModelConfig.encoders",
                "a non-empty mapping modality -> EncoderConfig",
                self.encoders,
            )
        for mod, enc in self.encoders.items():
            _check_str("ModelConfig.encoders key", mod)
            if not isinstance(enc, EncoderConfig):
                raise _type_error(f"ModelConfig.encoders[{mod!r}]", "an EncoderConfig", enc)
        if not isinstance(self.fusion, FusionConfig):
            raise _type_error("ModelConfig.fusion", "a FusionConfig", self.fusion)
        if not isinstance(self.head, HeadConfig):
            raise _type_error("ModelConfig.head", "a HeadConfig", self.head)
        if not isinstance(self.modality_dropout, Mapping):
            raise _type_error(
                "ModelConfig.modality_dropout",
                "a mapping modality -> probability",
                self.modality_dropout,
            )
        drop: dict[str, float] = {}
        for mod, p in self.modality_dropout.items():
            if mod not in self.encoders:
                raise ValueError(
                    f"ModelConfig.modality_dropout names modality {mod!r}, which has no "
                    f"encoder; modalities: {', '.join(sorted(self.encoders))}."
                    + _suggest(str(mod), self.encoders)
                )
            drop[mod] = _check_prob(f"ModelConfig.modality_dropout[{mod!r}]", p)
        object.__setattr__(self, "encoders", dict(self.encoders))
        object.__setattr__(self, "modality_dropout", drop)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-ready); :meth:`from_dict` inverts it."""
        return {
            "encoders": {m: e.to_dict() for m, e in sorted(self.encoders.items())},
            "fusion": self.fusion.to_dict(),
            "head": self.head.to_dict(),
            "modality_dropout": dict(sorted(self.modality_dropout.items())),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "model config") -> ModelConfig:
        """Parse :meth:`to_dict`'s output; unknown keys and wrong types raise ValueError."""
        _check_keys(where, d, _field_names(cls), required=("encoders",))
        encoders = d["encoders"]
        if not isinstance(encoders, Mapping):
            raise _type_error(f"{where}.encoders", "a mapping modality -> encoder config", encoders)
        return cls(
            encoders={
                str(m): EncoderConfig.from_dict(e, f"{where}.encoders.{m}")
                for m, e in encoders.items()
            },
            fusion=FusionConfig.from_dict(d.get("fusion") or {}, f"{where}.fusion"),
            head=HeadConfig.from_dict(d.get("head") or {}, f"{where}.head"),
            modality_dropout=_params(f"{where}.modality_dropout", d.get("modality_dropout") or {}),
        )

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The config as YAML text; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> ModelConfig:
        """Parse YAML text, or a file: a path object, or a one-line str ending in .yaml/.yml."""
        if isinstance(source, os.PathLike) or (
            "\n" not in source and source.endswith((".yaml", ".yml"))
        ):
            path = Path(source)
            text = path.read_text(encoding="utf-8")
            where = f"model config {str(path)!r}"
        else:
            text, where = source, "model config"
        data = yaml.safe_load(text)
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{where} must be a YAML mapping with keys {_field_names(cls)}, "
                f"got {type(data).__name__}."
            )
        return cls.from_dict(data, where)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _construct(cls: Callable[..., C], where: str, d: Mapping[str, Any]) -> C:
    """``cls(**d)`` with ``__post_init__`` errors re-worded to name ``where``."""
    try:
        return cls(**d)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


# --------------------------------------------------------------------------- building


def _builder_params(
    what: str, builder: Callable[..., Any], params: Mapping[str, Any], wired: list[str]
) -> None:
    """Check ``params`` against ``builder``'s signature; ``wired`` are set by build_model."""
    sig = inspect.signature(builder)
    settable = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in wired
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for key in params:
        if key in wired:
            raise ValueError(
                f"{what}: parameter {key!r} is set automatically by build_model; remove it."
            )
        if key not in settable and not takes_any:
            raise ValueError(
                f"{what}: unknown parameter {key!r}; valid parameters: "
                f"{', '.join(settable) or '(none)'}." + _suggest(key, settable)
            )
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.name in settable and p.default is p.empty and p.name not in params
    ]
    if missing:
        raise ValueError(f"{what}: missing required parameter(s) {missing}; add them to params.")


def num_outputs_for(schema: Schema) -> int:
    """Logits per example for ``schema.target``: classes, labels, or 1 for regression."""
    target = schema.target
    return 1 if target.task == "regression" else int(target.num_classes)


def build_head(in_dim: int, num_outputs: int, cfg: HeadConfig) -> nn.Module:
    """A head from ``in_dim`` fused features to ``num_outputs`` logits, as ``cfg`` says.

    Shape:
        - input: (B, in_dim)
        - output: (B, num_outputs)
    """
    layers = 1 if cfg.hidden_dim == 0 else 2
    return nn.Sequential(
        nn.Dropout(cfg.dropout),
        MLP(in_dim, num_outputs, cfg.hidden_dim or None, layers, "gelu", cfg.dropout),
    )


def _build_encoder(modality: str, cfg: EncoderConfig, spec: ModalitySpec) -> Encoder:
    """Build one encoder (params already checked) and check its kind and out_dim."""
    what = f"encoder {cfg.name!r} for modality {modality!r}"
    encoder = ENCODERS.get(cfg.name).builder(spec, **cfg.params)
    kind = getattr(encoder, "kind", None)
    if kind is not None and kind != spec.kind:
        raise ValueError(
            f"{what}: it encodes {getattr(kind, 'value', kind)!r} data, but modality "
            f"{modality!r} is {spec.kind.value!r}. Pick an encoder for {spec.kind.value!r} "
            "(see `polymodal list encoders`)."
        )
    out_dim = getattr(encoder, "out_dim", None)
    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise TypeError(f"{what}: built module has no positive int `out_dim`, got {out_dim!r}.")
    return encoder


def build_model(cfg: ModelConfig, schema: Schema, *, seed: int = 0) -> MultimodalModel:
    """Build the :class:`MultimodalModel` that ``cfg`` describes for data with ``schema``.

    Everything is checked before any module is built: each modality exists in ``schema``,
    each encoder/fusion name is registered and its ``params`` fit its builder's signature.
    Then the encoders are built from their modality specs, the fusion gets ``in_dims`` from
    the encoders' ``out_dim``, ``num_outputs`` comes from ``schema.target`` (classes for
    classification, labels for multilabel, 1 for regression).

    Args:
        cfg: the architecture.
        schema: the data set's schema (``dataset.schema``).
        seed: seed of the model's modality-dropout generator.
    """
    importlib.import_module("polymodal.encoders")  # registers the encoders
    importlib.import_module("polymodal.fusion")  # registers the fusions
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_model: cfg must be a ModelConfig, got {type(cfg).__name__}.")

    # -- check everything first
    for modality, enc_cfg in sorted(cfg.encoders.items()):
        if modality not in schema:
            raise ValueError(
                f"ModelConfig.encoders has modality {modality!r}, which the data set's schema "
                f"lacks; schema modalities: {', '.join(schema.names)}."
                + _suggest(modality, schema.names)
            )
        builder = ENCODERS.get(enc_cfg.name).builder
        spec_param = list(inspect.signature(builder).parameters)[:1]  # gets the ModalitySpec
        _builder_params(
            f"encoder {enc_cfg.name!r} for modality {modality!r}",
            builder,
            enc_cfg.params,
            wired=spec_param,
        )
    fusion_entry = FUSIONS.get(cfg.fusion.name)
    _builder_params(
        f"fusion {cfg.fusion.name!r}",
        fusion_entry.builder,
        cfg.fusion.params,
        wired=["in_dims", "num_outputs"],
    )
    num_outputs = num_outputs_for(schema)

    # -- build
    encoders = {m: _build_encoder(m, c, schema[m]) for m, c in sorted(cfg.encoders.items())}
    in_dims = {m: int(e.out_dim) for m, e in encoders.items()}
    fusion: Fusion = fusion_entry.builder(
        in_dims=in_dims, num_outputs=num_outputs, **cfg.fusion.params
    )
    head: nn.Module | None
    if fusion.decision_level:
        if cfg.head != HeadConfig():
            raise ValueError(
                f"fusion {cfg.fusion.name!r} is decision-level (it outputs the logits), so a "
                f"head has nothing to do, but the config sets head={cfg.head.to_dict()}. "
                "Remove `head` from the config or use a feature-level fusion."
            )
        head = None
    else:
        head = build_head(fusion.out_dim, num_outputs, cfg.head)
    return MultimodalModel(
        encoders,
        fusion,
        head,
        task=schema.target.task,
        num_outputs=num_outputs,
        modality_dropout=cfg.modality_dropout,
        seed=seed,
    )


__all__ = [
    "EncoderConfig",
    "FusionConfig",
    "HeadConfig",
    "ModelConfig",
    "build_head",
    "build_model",
    "num_outputs_for",
]
