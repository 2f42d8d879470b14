"""Encoders: one modality's :class:`~polymodal.data.sample.ModalityBatch` in,
:class:`EncoderOutput` (sequence (B, L, D), mask (B, L), pooled (B, D)) out.

Every encoder is built by name from the ``ENCODERS`` registry with the modality's spec::

    enc = build_encoder("audio_gru", spec=schema["audio"], dim=128)

Each registry entry records the modality kinds the encoder accepts
(``ENCODERS.get("mlp").kinds == ("tabular", "features")``).  Hyperparameters share one
name across encoders (and fusions): ``dim`` (the output size D), ``hidden_dim``,
``num_layers``, ``num_heads``, ``dropout``.

========== ================================================================
kind       encoders
========== ================================================================
text       ``text_transformer``, ``minilm`` (pretrained)
image      ``image_cnn``, ``image_vit``, ``efficientnet_lite0`` (pretrained)
audio      ``audio_cnn``, ``audio_gru``, ``audio_transformer``, ``audio_logmel`` (fixed),
           ``audio_ge2e`` (pretrained GE2E speaker encoder, frozen, with an adapter)
video      ``video_gru``, ``video_transformer``
timeseries ``ts_cnn``, ``ts_gru``, ``ts_transformer``
tabular    ``mlp`` (also ``features``, vectors or sequences)
========== ================================================================

Pretrained encoders need ``pip install "polymodal[pretrained]"`` (``audio_ge2e``:
``polymodal[video]``).
"""

from polymodal.encoders import (
    audio,
    audio_logmel,
    image,
    tabular,
    text,
    timeseries,
    video,
    voice,
)
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, build_encoder, masked_mean

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderOutput",
    "audio",
    "audio_logmel",
    "build_encoder",
    "image",
    "masked_mean",
    "tabular",
    "text",
    "timeseries",
    "video",
    "voice",
]
