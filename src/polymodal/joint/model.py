"""A joint embedding space: one encoder and one projection per modality, shared D-dim space.

:class:`JointEmbeddingModel` maps each of its modalities into one L2-normalised D-dim
space, where a dot product is a cosine similarity (CLIP-style retrieval).  With more than
two modalities, one is the *anchor* (ImageBind-style binding, Girdhar et al. 2023): the
model is trained on (anchor, other) pairs only, e.g. image-text and image-audio, and text
and audio become comparable through the shared image space without any text-audio pair.

Built from a :class:`JointConfig` (data, serialisable with ``to_dict``/``from_dict``)::

    config = JointConfig(
        modalities=(
            JointModalityConfig(ModalitySpec("image", "image", shape=(3, 224, 224)),
                                EncoderConfig("efficientnet_lite0")),
            JointModalityConfig(ModalitySpec("text", "text"), EncoderConfig("minilm")),
        ),
        dim=256,
        anchor="image",
    )
    model = JointEmbeddingModel(config)
    z = model.encode("text", batch["text"])  # (B, 256), unit norm

Frozen pretrained encoders make the projections the only trainable part:
:meth:`JointEmbeddingModel.project` applies a projection to pooled encoder features, so
the projections can be trained on cached features (:mod:`polymodal.joint.features`,
:mod:`polymodal.joint.train`).  An encoder with ``trainable_layers`` set fine-tunes its
last blocks: its frozen stem's outputs are cached instead, and
:meth:`JointEmbeddingModel.project_stem` runs the trained blocks and the projection on them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.checkpoint import weights_checksum
from polymodal.config import Config, check_mapping, param
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import Encoder, build_encoder
from polymodal.errors import did_you_mean
from polymodal.layers.dropout import Dropout
from polymodal.layers.mlp import MLP
from polymodal.layers.pooling import AttentionPool
from polymodal.models.config import EncoderConfig

PROJECTIONS = ("linear", "mlp", "residual")


@dataclass(frozen=True)
class JointModalityConfig(Config):
    """One modality of a joint space: its spec, encoder and projection head.

    Args:
        spec: the modality (its ``name`` is the key used everywhere; ``kind``, ``shape``
            and ``sample_rate`` tell encoders and decoders what to expect).
        encoder: the registered encoder and its builder parameters.
        projection: ``"linear"`` (one linear map), ``"mlp"`` (``num_layers`` linear maps
            with GELU in between) or ``"residual"`` (the sum of both: a linear map plus
            an MLP correction, which keeps what a linear probe finds).
        hidden_dim: width of the MLP's hidden layers; ``None`` means ``max(in, dim)``.
        num_layers: number of linear layers of the MLP (ignored for ``"linear"``).
        dropout: dropout after each hidden activation of the MLP (and on the input of a
            linear projection).
        input_norm: normalise the encoder features before the projection: ``True`` or
            ``"layer"`` a LayerNorm per example; ``"batch"`` each feature standardised by
            its training statistics (a BatchNorm without affine parameters: batch
            statistics while training, their running averages in eval mode).  Both help
            when frozen features have very different scales per dimension.
        pool: what the projection reads: ``"encoder"``, the encoder's pooled vector;
            ``"attention"``, its sequence (an image encoder's spatial map) through a
            learned :class:`~polymodal.layers.AttentionPool` of ``pool_heads`` heads that
            starts as mean pooling and learns which regions to weigh (image modalities,
            whose maps have a fixed number of steps; cached as sequences).
        pool_heads: heads of the attention pool (must divide the encoder's feature size).
        token_dropout: while training, leave each token of a text's cached stem outputs
            out with this probability (never the first, ``[CLS]``): caption augmentation
            on cached inputs, the trained blocks seeing each caption with words missing
            (text encoders with ``trainable_layers``).
    """

    moved: ClassVar[dict[str, str]] = {
        "layers": "renamed 'num_layers' (one name per hyperparameter)"
    }

    spec: ModalitySpec
    encoder: EncoderConfig
    projection: Literal["linear", "mlp", "residual"] = "mlp"
    hidden_dim: int | None = param(None, ge=1)
    num_layers: int = param(2, ge=1)
    dropout: float = param(0.0, ge=0, lt=1)
    input_norm: bool | Literal["layer", "batch"] = False
    pool: Literal["encoder", "attention"] = "encoder"
    pool_heads: int = param(8, ge=1)
    token_dropout: float = param(0.0, ge=0, lt=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.token_dropout and self.spec.kind is not ModalityKind.TEXT:
            raise ValueError(
                f"modalities.{self.spec.name}.token_dropout needs a text modality, got kind "
                f"{self.spec.kind.value!r}; set it to 0."
            )
        if self.pool == "attention" and self.spec.kind is not ModalityKind.IMAGE:
            raise ValueError(
                f"modalities.{self.spec.name}.pool='attention' needs an image modality (a "
                f"spatial map of fixed length), got kind {self.spec.kind.value!r}; use "
                "pool='encoder' for it."
            )


@dataclass(frozen=True)
class JointConfig(Config):
    """A joint embedding space over two or more modalities.

    In YAML, modalities are a mapping keyed by name (so every entry has a dotted path for
    ``key=value`` overrides, e.g. ``model.modalities.text.dropout=0.3``); a modality's
    ``spec`` then needs no ``name``::

        dim: 512
        anchor: image
        modalities:
          image: {spec: {kind: image, shape: [3, 224, 224]}, encoder: {name: efficientnet_lite0}}
          text: {spec: {kind: text}, encoder: {name: minilm}}

    Args:
        modalities: one :class:`JointModalityConfig` per modality (unique names).
        dim: D, the size of the shared space.
        anchor: the modality every training pair includes (binding); ``None`` means the
            first modality.
    """

    modalities: tuple[JointModalityConfig, ...]
    dim: int = param(256, ge=1)
    anchor: str | None = None
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        mods = self.modalities
        if len(mods) < 2:
            raise ValueError(
                "JointConfig: 'modalities' must list at least two modalities (a joint space "
                f"relates modalities), got {[m.spec.name for m in mods]}."
            )
        names = tuple(m.spec.name for m in mods)
        if len(set(names)) != len(names):
            raise ValueError(f"JointConfig: modality names must be unique, got {list(names)}.")
        anchor = names[0] if self.anchor is None else self.anchor
        if anchor not in names:
            raise ValueError(
                f"JointConfig: 'anchor' must be one of the modalities {list(names)}, got "
                f"{self.anchor!r}." + did_you_mean(self.anchor, names)
            )
        object.__setattr__(self, "anchor", anchor)
        object.__setattr__(self, "names", names)

    def __getitem__(self, name: str) -> JointModalityConfig:
        for m in self.modalities:
            if m.spec.name == name:
                return m
        raise KeyError(
            f"The joint space has no modality {name!r}; it has {list(self.names)}."
            + did_you_mean(name, self.names)
        )

    @classmethod
    def _prepare(cls, d: dict[str, Any], where: str) -> dict[str, Any]:
        """Modalities keyed by name (YAML) -> the tuple, each spec named by its key."""
        mods = d.get("modalities")
        if isinstance(mods, Mapping):
            entries = []
            for name, m in mods.items():
                at = f"{where}.modalities.{name}" if where else f"modalities.{name}"
                m = check_mapping(m, at)
                spec = check_mapping(m.get("spec", {}), f"{at}.spec")
                if spec.setdefault("name", name) != name:
                    raise ValueError(
                        f"{at}.spec.name is {spec['name']!r}; a modality's name is its key "
                        f"({name!r}): drop spec.name."
                    )
                # checked here, so that messages name the key the user wrote
                entries.append(JointModalityConfig.from_dict({**m, "spec": spec}, at))
            d = {**d, "modalities": tuple(entries)}
        return d

    def to_dict(self) -> dict[str, Any]:
        """Plain data with modalities keyed by name (the YAML form)."""
        d = super().to_dict()
        modalities = {}
        for m in d["modalities"]:
            spec = {k: v for k, v in m["spec"].items() if k != "name"}
            modalities[m["spec"]["name"]] = {**m, "spec": spec}
        d["modalities"] = modalities
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JointConfig:
        return cls.from_dict(json.loads(text))


class ResidualProjection(nn.Module):
    """``linear(x) + mlp(x)``: a linear projection plus an MLP correction.

    Shape:
        x: (B, E); output: (B, D).
    """

    def __init__(self, in_dim: int, dim: int, mlp: nn.Module, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Sequential(Dropout(dropout), nn.Linear(in_dim, dim))
        self.mlp = mlp

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.mlp(x)  # type: ignore[no-any-return]


def _projection(cfg: JointModalityConfig, in_dim: int, dim: int) -> nn.Module:
    head = _head(cfg, in_dim, dim)
    if cfg.pool != "attention":
        return head
    if in_dim % cfg.pool_heads:
        raise ValueError(
            f"modalities.{cfg.spec.name}.pool_heads must divide the encoder's feature size "
            f"{in_dim}, got {cfg.pool_heads}; pick a divisor such as 8."
        )
    return nn.Sequential(AttentionPool(in_dim, cfg.pool_heads), *head)  # (B, L, E) -> (B, D)


def _head(cfg: JointModalityConfig, in_dim: int, dim: int) -> nn.Sequential:
    norm: nn.Module = nn.Identity()
    if cfg.input_norm is True or cfg.input_norm == "layer":
        norm = nn.LayerNorm(in_dim)
    elif cfg.input_norm == "batch":
        norm = nn.BatchNorm1d(in_dim, affine=False)
    if cfg.projection == "linear":
        return nn.Sequential(norm, Dropout(cfg.dropout), nn.Linear(in_dim, dim))
    mlp = MLP(in_dim, dim, cfg.hidden_dim, num_layers=cfg.num_layers, dropout=cfg.dropout)
    if cfg.projection == "residual":
        return nn.Sequential(norm, ResidualProjection(in_dim, dim, mlp, cfg.dropout))
    return nn.Sequential(norm, mlp)


def _out_dim(encoder: nn.Module) -> int:
    """The pooled feature size of an encoder (its ``out_dim``)."""
    return int(encoder.out_dim)  # type: ignore[arg-type]


class JointEmbeddingModel(nn.Module):
    """Encoders + projections of several modalities into one L2-normalised D-dim space.

    Args:
        config: the modalities, D and the anchor.
        encoders: already built encoders by modality name (composition); those not given
            are built from ``config`` with the registry.

    Attributes:
        encoders: ``nn.ModuleDict`` modality -> :class:`Encoder`.
        projections: ``nn.ModuleDict`` modality -> projection (encoder dim -> D).
    """

    def __init__(self, config: JointConfig, encoders: Mapping[str, Encoder] | None = None) -> None:
        super().__init__()
        if not isinstance(config, JointConfig):
            raise TypeError(f"JointEmbeddingModel: 'config' must be a JointConfig, got {config!r}.")
        given = dict(encoders or {})
        unknown = sorted(set(given) - set(config.names))
        if unknown:
            raise ValueError(
                f"JointEmbeddingModel: encoders given for {unknown}, which are not modalities "
                f"of the config {list(config.names)}."
            )
        self.config = config
        self.encoders = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        for m in config.modalities:
            name = m.spec.name
            enc = given.get(name)
            if enc is None:
                enc = build_encoder(m.encoder.name, spec=m.spec, **m.encoder.params)
            if m.token_dropout and not enc.has_stem:
                raise ValueError(
                    f"modalities.{name}.token_dropout={m.token_dropout} drops tokens of cached "
                    f"stem outputs, but the {m.encoder.name!r} encoder has no frozen stem; set "
                    f"modalities.{name}.encoder.params.trainable_layers (e.g. 1), or "
                    "token_dropout to 0."
                )
            self.encoders[name] = enc
            self.projections[name] = _projection(m, _out_dim(enc), config.dim)

    @property
    def modalities(self) -> list[str]:
        """The modality names, in config order."""
        return list(self.config.names)

    @property
    def anchor(self) -> str:
        return str(self.config.anchor)

    @property
    def dim(self) -> int:
        return self.config.dim

    def _check(self, modality: str) -> None:
        if modality not in self.config.names:
            raise ValueError(
                f"JointEmbeddingModel: modality {modality!r} is not in this model; it embeds "
                f"{list(self.config.names)}. Query with one of those, or train a model that "
                f"includes {modality!r}." + did_you_mean(modality, self.config.names)
            )

    def feature_dim(self, modality: str) -> int:
        """E, the size of ``modality``'s pooled encoder features (the projection input)."""
        self._check(modality)
        return _out_dim(self.encoders[modality])

    def frozen_encoders(self) -> list[str]:
        """Modalities whose encoder has no trainable parameter."""
        return [
            name
            for name, enc in self.encoders.items()
            if not any(p.requires_grad for p in enc.parameters())
        ]

    def pools_sequence(self, modality: str) -> bool:
        """Whether ``modality``'s projection reads the encoder's sequence (``pool: attention``)."""
        self._check(modality)
        return self.config[modality].pool == "attention"

    def tunes_stem(self, modality: str) -> bool:
        """Whether ``modality``'s encoder has a frozen stem and trained last blocks
        (``trainable_layers``): its cached features are the stem's outputs, and
        :meth:`project_stem` runs the trained blocks on them."""
        self._check(modality)
        return bool(self.encoders[modality].has_stem)

    def project_stem(self, modality: str, sequence: Tensor, mask: Tensor) -> Tensor:
        """The encoder's trained tail on its stem's outputs (e.g. cached), then the projection.

        Shape:
            sequence: (B, L, E) stem outputs; mask: (B, L) True at real steps;
            output: (B, D), unit L2 norm.
        """
        if not self.tunes_stem(modality):
            raise ValueError(
                f"JointEmbeddingModel.project_stem({modality!r}): the {modality} encoder has no "
                "frozen stem; set its trainable_layers, or pass pooled features to project()."
            )
        p = self.config[modality].token_dropout
        if self.training and p > 0:  # leave tokens out, the rest moved up to stay a prefix
            keep = mask & (torch.rand(mask.shape, device=mask.device) >= p)  # (B, L)
            keep[:, 0] = mask[:, 0]
            order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept first
            sequence = sequence.gather(1, order.unsqueeze(-1).expand_as(sequence))
            mask = keep.gather(1, order)
        encoder: Encoder = self.encoders[modality]  # type: ignore[assignment]
        out = encoder.forward_tail(sequence, mask)
        features = out.sequence if self.pools_sequence(modality) else out.pooled  # (B, [L,] E)
        return self.project(modality, features)

    def project(self, modality: str, features: Tensor) -> Tensor:
        """Project encoder features (e.g. cached ones) into the joint space.

        Shape:
            features: (B, E) pooled, with E the modality encoder's ``out_dim``; with
                ``pool: attention``, the encoder's sequence (B, L, E).
            output: (B, D), unit L2 norm.
        """
        self._check(modality)
        expected = _out_dim(self.encoders[modality])
        seq = self.pools_sequence(modality)
        if features.dim() != (3 if seq else 2) or features.shape[-1] != expected:
            want = (
                f"(B, L, {expected}) (the {modality} encoder's sequence: pool is 'attention')"
                if seq
                else f"(B, {expected}) (the {modality} encoder's pooled output)"
            )
            raise ValueError(
                f"JointEmbeddingModel.project({modality!r}): features must have shape {want}, "
                f"got {tuple(features.shape)}."
            )
        return F.normalize(self.projections[modality](features), dim=-1)  # (B, D)

    def encode(self, modality: str, batch: ModalityBatch) -> Tensor:
        """Encode one modality's batch into the joint space.

        Shape:
            batch.values: as the modality's encoder expects (e.g. (B, 3, H, W), B strings).
            output: (B, D), unit L2 norm.
        """
        self._check(modality)
        out = self.encoders[modality](batch)
        features = out.sequence if self.pools_sequence(modality) else out.pooled  # (B, [L,] E)
        return self.project(modality, features)

    def forward(self, modality: str, batch: ModalityBatch) -> Tensor:
        """Same as :meth:`encode`.

        Shape:
            output: (B, D), unit L2 norm.
        """
        return self.encode(modality, batch)

    def encode_all(self, batches: Mapping[str, ModalityBatch]) -> dict[str, Tensor]:
        """:meth:`encode` for each modality of ``batches``, keys sorted.

        Shape:
            output: modality -> (B, D).
        """
        return {name: self.encode(name, batches[name]) for name in sorted(batches)}

    def fingerprint(self) -> str:
        """A short digest of the config and every weight: equal models, equal fingerprints."""
        h = hashlib.sha256(self.config.to_json().encode())
        h.update(weights_checksum(self).encode())
        return h.hexdigest()[:16]


__all__ = [
    "PROJECTIONS",
    "JointConfig",
    "JointEmbeddingModel",
    "JointModalityConfig",
    "ResidualProjection",
]
