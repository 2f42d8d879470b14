"""Assembled models: :class:`MultimodalModel` and its config, built with :func:`build_model`."""

from polymodal.models.config import (
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    ModelConfig,
    build_head,
    build_model,
    num_outputs_for,
)
from polymodal.models.multimodal import ModelOutput, MultimodalModel

__all__ = [
    "EncoderConfig",
    "FusionConfig",
    "HeadConfig",
    "ModelConfig",
    "ModelOutput",
    "MultimodalModel",
    "build_head",
    "build_model",
    "num_outputs_for",
]
