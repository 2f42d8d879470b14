"""Context across examples: classify each utterance from the other utterances of its video.

:class:`ContextModel` wraps an utterance-level :class:`MultimodalModel` (any registered
*feature-level* fusion): the utterance model encodes and fuses every utterance of a batch
of videos on its own, giving one fused embedding per utterance (``ModelOutput.features``);
those embeddings are laid out as one sequence per video and read by a bidirectional GRU
(packed, so padding never enters the recurrence) or a transformer encoder (padding masked
out of the attention keys, sinusoidal positions for the utterance order).  Each utterance
is classified from its context state concatenated with its own fused embedding::

    utterances (N) --utterance model--> fused (N, D) --pad--> (V, U, D)
        --biGRU / transformer--> (V, U, H) --concat fused, dropout, linear--> (V, U, K)

Decision-level fusions (``late``, ``hybrid``) are rejected: they have no fused
representation, only the K logits, a K-d summary that throws away what a context model
needs.  Use the utterance model's logits as they are, or a feature-level fusion, instead.

:class:`ContextConfig` is the context part of a ``task: context`` run's config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from polymodal.config import Config, param
from polymodal.data.context import VideoBatch, pad_utterances
from polymodal.errors import unknown_name_error
from polymodal.layers.dropout import Dropout
from polymodal.models.multimodal import MultimodalModel

CONTEXTS = ("gru", "transformer")


@dataclass(frozen=True, kw_only=True)
class ContextConfig(Config):
    """The sequence model over each video's utterances (see :class:`ContextModel`).

    Args:
        context: ``"gru"`` (bidirectional, packed) or ``"transformer"``.
        hidden_dim: GRU hidden size per direction, or the transformer's width.
        num_layers: stacked GRU / transformer layers.
        dropout: dropout on the context input, between layers and before the classifier.
        num_heads: attention heads of the transformer (ignored by the GRU).
        modality_dropout: what the utterance model's ``modality_dropout`` hides a modality
            from: ``"utterance"`` (each utterance on its own) or ``"video"`` (every
            utterance of the video at once: a sensor that failed for a whole recording,
            which is how a modality goes missing at test time).
    """

    context: Literal["gru", "transformer"] = "gru"
    hidden_dim: int = param(64, ge=1)
    num_layers: int = param(1, ge=1)
    dropout: float = param(0.1, ge=0, lt=1)
    num_heads: int = param(4, ge=1)
    modality_dropout: Literal["utterance", "video"] = "utterance"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context == "transformer" and self.hidden_dim % self.num_heads:
            raise ValueError(
                f"ContextConfig: hidden_dim={self.hidden_dim} must be divisible by "
                f"num_heads={self.num_heads} for the transformer; change one of them."
            )


@dataclass
class ContextOutput:
    """What :class:`ContextModel` returns.

    Attributes:
        logits: (V, U, K) per-utterance class logits (padding steps hold garbage: use
            ``mask``).
        mask: (V, U) bool, True at real utterances.
        utterance_logits: (V, U, K) the utterance model's own logits (no context), zero at
            padding; for inspection and ablations.
    """

    logits: Tensor
    mask: Tensor
    utterance_logits: Tensor


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """(length, dim) fixed sine/cosine position codes (Vaswani et al., 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def _feature_fusions() -> list[str]:
    from polymodal.fusion.base import FUSIONS

    return [e.name for e in FUSIONS if "decision" not in e.kinds]


class ContextModel(nn.Module):
    """An utterance-level model plus a sequence model over each video's utterances.

    Args:
        utterance_model: a :class:`MultimodalModel` with a feature-level fusion and a
            classification task; trained jointly (its gradients flow).
        context: ``"gru"`` (bidirectional, packed) or ``"transformer"`` (masked
            self-attention over the video's utterances).
        hidden_dim: the context width H: GRU hidden size per direction (the output is 2H),
            or the transformer's model width (divisible by ``num_heads``).
        num_layers: stacked GRU / transformer layers (>= 1).
        dropout: dropout on the context input, between layers and before the classifier.
        num_heads: attention heads of the transformer (ignored by the GRU).
        modality_dropout: ``"utterance"`` or ``"video"``: the unit the utterance model's
            training-time modality dropout hides a modality from (see
            :class:`ContextConfig`).

    The utterance model's head is not used for the prediction (only for
    ``ContextOutput.utterance_logits``); a new linear classifier reads
    ``[context state, fused embedding]`` of each utterance.
    """

    def __init__(
        self,
        utterance_model: MultimodalModel,
        context: str = "gru",
        hidden_dim: int = 64,
        num_layers: int = 1,
        dropout: float = 0.1,
        num_heads: int = 4,
        modality_dropout: str = "utterance",
    ) -> None:
        super().__init__()
        if not isinstance(utterance_model, MultimodalModel):
            raise TypeError(
                f"ContextModel: utterance_model must be a MultimodalModel (build_model), got "
                f"{type(utterance_model).__name__}."
            )
        if utterance_model.decision_level:
            raise ValueError(
                f"ContextModel: the utterance model's fusion "
                f"{type(utterance_model.fusion).__name__} is decision-level: it gives only "
                f"the {utterance_model.num_outputs} logits, not an embedding to give context "
                f"to. Build the utterance model with a feature-level fusion "
                f"({', '.join(_feature_fusions())})."
            )
        if utterance_model.task != "classification":
            raise ValueError(
                f"ContextModel classifies utterances; the utterance model's task must be "
                f"'classification', got {utterance_model.task!r}."
            )
        if context not in CONTEXTS:
            raise unknown_name_error("context", context, list(CONTEXTS))
        if modality_dropout not in ("utterance", "video"):
            raise unknown_name_error("modality_dropout", modality_dropout, ["utterance", "video"])
        hidden, layers, heads = hidden_dim, num_layers, num_heads
        for name, value in (
            ("hidden_dim", hidden),
            ("num_layers", layers),
            ("num_heads", heads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ContextModel: {name} must be an int >= 1, got {value!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ContextModel: dropout must be in [0, 1), got {dropout!r}.")
        if context == "transformer" and hidden % heads:
            raise ValueError(
                f"ContextModel: hidden_dim={hidden} must be divisible by num_heads={heads} for the "
                "transformer; change one of them."
            )
        self.utterance_model = utterance_model
        self.context = context
        self.modality_dropout = modality_dropout
        self.task = "classification"
        self.num_outputs = utterance_model.num_outputs
        in_dim = int(utterance_model.fusion.out_dim)
        self.in_dim = in_dim
        self.hidden_dim = hidden
        self.input_dropout = Dropout(dropout)
        self.rnn: nn.GRU | None = None
        self.proj: nn.Linear | None = None
        self.encoder: nn.TransformerEncoder | None = None
        if context == "gru":
            self.rnn = nn.GRU(
                in_dim,
                hidden,
                num_layers=layers,
                batch_first=True,
                bidirectional=True,
                dropout=dropout if layers > 1 else 0.0,
            )
            ctx_dim = 2 * hidden
        else:
            self.proj = nn.Linear(in_dim, hidden)
            layer = nn.TransformerEncoderLayer(
                hidden,
                heads,
                dim_feedforward=2 * hidden,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False
            )
            ctx_dim = hidden
        self.classifier = nn.Sequential(
            Dropout(dropout), nn.Linear(ctx_dim + in_dim, self.num_outputs)
        )

    def _contextualise(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        """(V, U, D) padded embeddings -> (V, U, C) context states (zero at padding)."""
        if self.rnn is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            ctx, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            return ctx  # (V, U, 2H)
        assert self.proj is not None and self.encoder is not None  # set in __init__
        h = self.proj(x) + sinusoidal_positions(x.shape[1], self.hidden_dim).to(x)  # (V, U, H)
        h = self.encoder(h, src_key_padding_mask=~mask)  # (V, U, H)
        return h * mask[..., None].to(h.dtype)

    def forward(self, batch: VideoBatch) -> ContextOutput:
        """Classify every utterance of every video in ``batch``.

        Shape:
            - batch.utterances: N utterances (a Batch the utterance model reads)
            - batch.lengths: (V,), sum N
            - output.logits, output.utterance_logits: (V, U, K), U = ``lengths.max()``
            - output.mask: (V, U)
        """
        if not isinstance(batch, VideoBatch):
            raise TypeError(
                f"ContextModel expects a VideoBatch (VideoDataset.batch), got "
                f"{type(batch).__name__}."
            )
        lengths = batch.lengths
        if bool((lengths < 1).any()):
            raise ValueError(f"Every video needs >= 1 utterance; got lengths {lengths.tolist()}.")
        groups = None
        if self.modality_dropout == "video" and self.training:  # a video loses a modality whole
            groups = torch.repeat_interleave(torch.arange(len(lengths)), lengths.cpu())  # (N,)
        out = self.utterance_model(batch.utterances, groups)  # features (N, D), logits (N, K)
        assert out.features is not None  # feature-level fusion, checked in __init__
        fused = pad_utterances(out.features, lengths)  # (V, U, D)
        mask = batch.mask.to(fused.device)
        ctx = self._contextualise(self.input_dropout(fused), lengths, mask)  # (V, U, C)
        logits = self.classifier(torch.cat([ctx, fused], dim=-1))  # (V, U, K)
        return ContextOutput(logits, mask, pad_utterances(out.logits, lengths))


__all__ = ["CONTEXTS", "ContextConfig", "ContextModel", "ContextOutput", "sinusoidal_positions"]
