"""Shared neural-network layers used by encoders, fusion modules and heads."""

from polymodal.layers.dropout import Dropout
from polymodal.layers.melspec import (
    LogMelSpectrogram,
    Spectrogram,
    masked_standardize,
    mel_filterbank,
)
from polymodal.layers.mlp import MLP, make_activation
from polymodal.layers.pooling import AttentionPool
from polymodal.layers.transformer import (
    CrossAttentionBlock,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    TransformerBlock,
    TransformerEncoder,
    sinusoidal_embedding,
)

__all__ = [
    "MLP",
    "AttentionPool",
    "CrossAttentionBlock",
    "Dropout",
    "LearnedPositionalEmbedding",
    "LogMelSpectrogram",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "Spectrogram",
    "TransformerBlock",
    "TransformerEncoder",
    "make_activation",
    "masked_standardize",
    "mel_filterbank",
    "sinusoidal_embedding",
]
