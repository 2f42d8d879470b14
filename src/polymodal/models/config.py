"""Model architecture as data: the configs :func:`~polymodal.models.build.build_model` reads.

A YAML model section is :class:`ModelConfig` serialised::

    encoders:
      audio: {name: audio_cnn, params: {dim: 64}}
      text: {name: text_transformer, params: {}}
    fusion: {name: late, params: {combine: learned}}
    head: {hidden_dim: 0, dropout: 0.0}
    modality_dropout: {audio: 0.2}

These are :class:`polymodal.config.Config` dataclasses: unknown keys, wrong types, NaN and
out-of-range numbers fail with the key's name.  An encoder's or fusion's ``params`` are
checked against its builder's signature by ``build_model``, before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from polymodal.config import Config, param
from polymodal.errors import did_you_mean


@dataclass(frozen=True)
class EncoderConfig(Config):
    """One modality's encoder.

    Args:
        name: a registered encoder (``polymodal list encoders``).
        params: keyword arguments of its builder (``dim`` included); the modality spec is
            passed automatically.  Plain data only (tuples are stored as lists).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name:
            raise ValueError("EncoderConfig.name must name a registered encoder, got ''.")


@dataclass(frozen=True)
class FusionConfig(Config):
    """The fusion strategy.

    Args:
        name: a registered fusion (``polymodal list fusions``): feature-level (a head reads
            its output) or decision-level (``late``, ``hybrid``: it predicts by itself).
        params: keyword arguments of its builder; ``in_dims`` (and ``num_outputs`` for a
            decision-level fusion) are wired automatically from the encoders and the target.
    """

    name: str = "early"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name:
            raise ValueError("FusionConfig.name must name a registered fusion, got ''.")


@dataclass(frozen=True)
class HeadConfig(Config):
    """The prediction head after a feature-level fusion.

    Args:
        hidden_dim: 0 for a linear head, else the width of one hidden GELU layer.
        dropout: dropout probability on the head's input (and hidden layer).
    """

    hidden_dim: int = param(0, ge=0)
    dropout: float = param(0.0, ge=0, lt=1)


@dataclass(frozen=True)
class ModelConfig(Config):
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
    modality_dropout: dict[str, float] = param(default_factory=dict, ge=0, lt=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.encoders:
            raise ValueError(
                "ModelConfig.encoders must map at least one modality to an encoder, e.g. "
                "encoders: {text: {name: minilm}}."
            )
        for mod in self.modality_dropout:
            if mod not in self.encoders:
                raise ValueError(
                    f"ModelConfig.modality_dropout names modality {mod!r}, which has no "
                    f"encoder; modalities: {', '.join(sorted(self.encoders))}."
                    + did_you_mean(mod, self.encoders)
                )
        object.__setattr__(self, "encoders", dict(sorted(self.encoders.items())))
        object.__setattr__(self, "modality_dropout", dict(sorted(self.modality_dropout.items())))


__all__ = ["EncoderConfig", "FusionConfig", "HeadConfig", "ModelConfig"]
