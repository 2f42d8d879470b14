"""Build a :class:`MultimodalModel` from a :class:`ModelConfig` and a data set's schema.

:func:`build_model` checks everything before it builds anything (torchtune's habit): each
configured modality exists in the schema, each encoder accepts that modality's kind, each
encoder's and the fusion's ``params`` fit the registered builder's signature.  Then::

    encoders (one per modality, from its spec) --out_dim--> fusion (in_dims)
        feature-level fusion: + a head (fusion.out_dim -> K)
        decision-level fusion: predicts the K logits itself (num_outputs wired in)

K comes from the schema's target: classes, labels, or 1 for regression.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from polymodal.data.modality import ModalitySpec, Schema
from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.errors import did_you_mean
from polymodal.fusion.base import FUSIONS
from polymodal.layers.augment import Augment
from polymodal.layers.dropout import Dropout
from polymodal.layers.mlp import MLP
from polymodal.models.config import EncoderConfig, HeadConfig, ModelConfig
from polymodal.models.multimodal import MultimodalModel

#: ``Entry.kinds`` of a decision-level fusion (see :mod:`polymodal.models.decision`).
DECISION = "decision"


def register_components() -> None:
    """Import every module that registers encoders and fusions (idempotent)."""
    for module in ("polymodal.encoders", "polymodal.fusion", "polymodal.models.decision"):
        importlib.import_module(module)


def is_decision_level(fusion_name: str) -> bool:
    """Whether the registered fusion ``fusion_name`` predicts by itself (late, hybrid)."""
    register_components()
    return DECISION in FUSIONS.get(fusion_name).kinds


def check_builder_params(
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
                f"{', '.join(settable) or '(none)'}." + did_you_mean(key, settable)
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
    unlabelled = target.task == "classification" and not target.name and not target.num_classes
    if target.task == "none" or unlabelled:
        raise ValueError(
            "The data set has no labels (for a manifest: no 'label' column, or every label "
            "empty), so there is nothing to learn to predict. Add a 'label' column, or train a "
            "joint embedding (task: contrastive) instead."
        )
    num = 1 if target.task == "regression" else int(target.num_classes)
    if num < 1:
        raise ValueError(
            f"The data set's target {target.name!r} has {num} classes; a classifier needs "
            "at least one. Check the label column."
        )
    return num


def build_head(in_dim: int, num_outputs: int, cfg: HeadConfig) -> nn.Module:
    """A head from ``in_dim`` fused features to ``num_outputs`` logits, as ``cfg`` says.

    Shape:
        - input: (B, in_dim)
        - output: (B, num_outputs)
    """
    layers = 1 if cfg.hidden_dim == 0 else 2
    return nn.Sequential(
        Dropout(cfg.dropout),
        MLP(in_dim, num_outputs, cfg.hidden_dim or None, layers, "gelu", cfg.dropout),
    )


def _check_encoder(modality: str, cfg: EncoderConfig, spec: ModalitySpec) -> None:
    entry = ENCODERS.get(cfg.name)
    what = f"encoder {cfg.name!r} for modality {modality!r}"
    if entry.kinds and spec.kind.value not in entry.kinds:
        raise ValueError(
            f"{what}: it encodes {' or '.join(map(repr, entry.kinds))} data, but modality "
            f"{modality!r} is {spec.kind.value!r}. Pick an encoder for {spec.kind.value!r} "
            "(see `polymodal list encoders`)."
        )
    spec_param = list(inspect.signature(entry.builder).parameters)[:1]  # gets the spec
    check_builder_params(what, entry.builder, cfg.params, wired=spec_param)


def _build_encoder(modality: str, cfg: EncoderConfig, spec: ModalitySpec) -> Encoder:
    """Build one encoder (params already checked) and check its out_dim."""
    encoder = ENCODERS.get(cfg.name).builder(spec, **cfg.params)
    out_dim = getattr(encoder, "out_dim", None)
    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise TypeError(
            f"encoder {cfg.name!r} for modality {modality!r}: built module has no positive "
            f"int `out_dim`, got {out_dim!r}."
        )
    return encoder


def build_model(cfg: ModelConfig, schema: Schema, *, seed: int = 0) -> MultimodalModel:
    """Build the :class:`MultimodalModel` that ``cfg`` describes for data with ``schema``.

    Args:
        cfg: the architecture.
        schema: the data set's schema (``dataset.schema``).
        seed: seed of the model's modality-dropout generator and of its encoders'
            training augmentation (``augment``).

    Raises:
        ValueError: a modality the schema lacks, an encoder of the wrong kind, a name that is
            not registered, params that do not fit a builder, a head on a decision-level
            fusion.  Nothing is built before every check passed.
    """
    register_components()
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_model: cfg must be a ModelConfig, got {type(cfg).__name__}.")

    # -- check everything first
    for modality, enc_cfg in cfg.encoders.items():
        if modality not in schema:
            raise ValueError(
                f"ModelConfig.encoders has modality {modality!r}, which the data set's schema "
                f"lacks; schema modalities: {', '.join(schema.names)}."
                + did_you_mean(modality, schema.names)
            )
        _check_encoder(modality, enc_cfg, schema[modality])
    fusion_entry = FUSIONS.get(cfg.fusion.name)
    decision = DECISION in fusion_entry.kinds
    wired = ["in_dims", "num_outputs"] if decision else ["in_dims"]
    check_builder_params(
        f"fusion {cfg.fusion.name!r}", fusion_entry.builder, cfg.fusion.params, wired
    )
    check_task = getattr(fusion_entry.builder, "check_task", None)
    if check_task is not None:
        check_task(schema.target.task, dict(cfg.fusion.params))
    if decision and cfg.head != HeadConfig():
        raise ValueError(
            f"fusion {cfg.fusion.name!r} is decision-level (it outputs the logits), so a head "
            f"has nothing to do, but the config sets head={cfg.head.to_dict()}. Remove `head` "
            "from the config or use a feature-level fusion."
        )
    if len(cfg.encoders) == 1 and any(p > 0 for p in cfg.modality_dropout.values()):
        raise ValueError(
            f"model.modality_dropout={cfg.modality_dropout} has no effect on a model with one "
            "modality: an example never loses all of its modalities. Remove it."
        )
    num_outputs = num_outputs_for(schema)

    # -- build
    encoders = {m: _build_encoder(m, c, schema[m]) for m, c in cfg.encoders.items()}
    in_dims = {m: int(e.out_dim) for m, e in encoders.items()}
    head: nn.Module | None = None
    if decision:
        fusion = fusion_entry.builder(in_dims=in_dims, num_outputs=num_outputs, **cfg.fusion.params)
    else:
        fusion = fusion_entry.builder(in_dims=in_dims, **cfg.fusion.params)
        head = build_head(fusion.out_dim, num_outputs, cfg.head)
    model = MultimodalModel(
        encoders,
        fusion,
        head,
        task=schema.target.task,
        num_outputs=num_outputs,
        modality_dropout=cfg.modality_dropout,
        seed=seed,
    )
    # each encoder's training augmentation draws from its own stream of the run's seed
    augments = [m for m in model.modules() if isinstance(m, Augment)]
    for k, augment in enumerate(augments):
        augment.manual_seed(seed + 1000 * (k + 1))
    return model


__all__ = [
    "build_head",
    "build_model",
    "check_builder_params",
    "is_decision_level",
    "num_outputs_for",
    "register_components",
]
