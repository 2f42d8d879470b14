"""Assembled models and their configs.

=================== =================================================================
file                holds
=================== =================================================================
``config.py``       :class:`ModelConfig` (encoders, fusion, head, modality dropout)
``build.py``        :func:`build_model`: checks a config against the schema and the
                    registered builders' signatures, then builds
``multimodal.py``   :class:`MultimodalModel`: encoders -> fusion -> head
``decision.py``     decision-level fusions (``late``, ``hybrid``): they predict themselves
``context.py``      :class:`ContextModel`: a sequence model over a video's utterances
=================== =================================================================

Joint embedding spaces live in :mod:`polymodal.joint`.
"""

from polymodal.models.build import build_head, build_model, num_outputs_for
from polymodal.models.config import EncoderConfig, FusionConfig, HeadConfig, ModelConfig
from polymodal.models.context import ContextConfig, ContextModel
from polymodal.models.decision import DecisionFusion, HybridFusion, LateFusion
from polymodal.models.multimodal import MultimodalModel
from polymodal.outputs import ModelOutput

__all__ = [
    "ContextConfig",
    "ContextModel",
    "DecisionFusion",
    "EncoderConfig",
    "FusionConfig",
    "HeadConfig",
    "HybridFusion",
    "LateFusion",
    "ModelConfig",
    "ModelOutput",
    "MultimodalModel",
    "build_head",
    "build_model",
    "num_outputs_for",
]
