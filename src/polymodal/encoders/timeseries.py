"""Time-series encoders, and the masked sequence backbones that audio and video reuse.

A time series batch is ``values`` (B, T, C) right-padded, with ``lengths``/``mask``.
Every backbone here maps (B, T, C) plus a (B, T) mask to (B, T, D) and is
**padding-invariant**: an example's outputs at its valid steps are the same whether it is
alone or padded in a batch (eval mode).  Pooling is a masked mean, so a length-0 example
(an absent one) pools to zeros.

* :class:`SequenceCNN`: 1-D convolutions (dilated, residual) with a per-step channel
  LayerNorm; padded steps are zeroed after every layer, which is exactly what zero
  padding of the convolution would see for the example alone.
* :class:`SequenceGRU`: a (bi)GRU run on packed sequences.
* :class:`SequenceTransformer`: a linear embedding, sinusoidal positions and a
  pre-norm transformer with a key padding mask.

Encoders: ``ts_cnn``, ``ts_gru``, ``ts_transformer``.  Their ``augment`` parameter adds
training-time augmentation (:class:`~polymodal.layers.timeseries_augment.TimeSeriesAugment`:
time warp, 3-D rotation of channel triplets, scale, jitter), e.g.
``augment={rotation: 15, scale: 0.1, time_warp: 0.1, jitter: 0.05}``.

The module also holds the input checks shared by all encoders (:func:`check_spec`,
:func:`tensor_values`, :func:`sequence_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, masked_mean
from polymodal.layers.dropout import Dropout
from polymodal.layers.timeseries_augment import TimeSeriesAugment, build_timeseries_augment
from polymodal.layers.transformer import SinusoidalPositionalEncoding, TransformerEncoder

# ---------------------------------------------------------------------------------------
# Input checks shared by every encoder
# ---------------------------------------------------------------------------------------


def check_spec(spec: ModalitySpec, encoder: str, kinds: Sequence[str] | None = None) -> None:
    """Fail unless ``spec`` is a :class:`ModalitySpec` of one of ``kinds``.

    ``kinds=None`` reads them from the encoder's registry entry (``ENCODERS.get(encoder)``),
    so the kinds an encoder accepts are written once, where it is registered.
    """
    if not isinstance(spec, ModalitySpec):
        raise TypeError(
            f"{encoder}: spec must be a ModalitySpec, got {type(spec).__name__}. Pass the "
            "data set schema's spec, e.g. spec=schema['audio']."
        )
    if kinds is None:
        kinds = ENCODERS.get(encoder).kinds
    if spec.kind not in kinds:
        valid = ", ".join(repr(str(k)) for k in kinds)
        raise ValueError(
            f"{encoder} encodes modalities of kind {valid}, but spec {spec.name!r} has kind "
            f"{spec.kind.value!r}; pick an encoder for {spec.kind.value!r} "
            "(see `polymodal list encoders`)."
        )


def check_dim(dim: int, encoder: str, name: str = "dim") -> int:
    """Fail unless ``dim`` is a positive int."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{encoder}: {name} must be a positive int, got {dim!r}")
    return dim


def spec_channels(spec: ModalitySpec, encoder: str, layout: str) -> int:
    """The last entry of ``spec.shape`` (channels C / features D), which must be set."""
    if spec.shape is None or len(spec.shape) == 0:
        raise ValueError(
            f"{encoder} needs the feature size of modality {spec.name!r}: its spec has "
            f"shape={spec.shape!r}; set ModalitySpec.shape to the per-step shape ({layout})."
        )
    return int(spec.shape[-1])


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def tensor_values(
    batch: ModalityBatch,
    encoder: str,
    layout: str,
    ndim: int | tuple[int, ...],
    trailing: Sequence[int | None] = (),
) -> Tensor:
    """``batch.values`` as a float tensor after checking its rank and trailing sizes.

    Args:
        batch: the modality batch.
        encoder: the encoder's name, for messages.
        layout: the expected layout in words, e.g. ``"(B, 3, H, W)"``.
        ndim: the accepted rank(s).
        trailing: expected sizes of the last dims (``None`` = any).
    """
    values = batch.values
    if not isinstance(values, Tensor):
        raise TypeError(
            f"{encoder} expects a tensor {layout}, got {type(values).__name__}; is the modality "
            "of the right kind?"
        )
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    shape = tuple(values.shape)
    ok = values.dim() in ranks
    if ok and trailing:
        tail = shape[len(shape) - len(trailing) :]
        ok = all(e is None or e == s for e, s in zip(trailing, tail, strict=True))
    if not ok:
        raise ValueError(f"{encoder} expects {layout}, got {_fmt_shape(shape)}")
    if batch.present.shape != (shape[0],):
        raise ValueError(
            f"{encoder}: present has shape {_fmt_shape(batch.present.shape)} but values hold "
            f"{shape[0]} examples; present must be (B,)."
        )
    return values if values.is_floating_point() else values.float()


def sequence_mask(batch: ModalityBatch, values: Tensor, encoder: str) -> Tensor:
    """(B, L) bool valid-step mask of a padded sequence batch; absent examples have none.

    Uses ``batch.mask``, else ``batch.lengths``, else every step is valid.
    """
    b, length = values.shape[:2]
    if batch.mask is not None:
        mask = batch.mask.to(device=values.device, dtype=torch.bool)
        if tuple(mask.shape) != (b, length):
            raise ValueError(
                f"{encoder}: mask has shape {_fmt_shape(mask.shape)}, expected ({b}, {length}) "
                "to match values; rebuild the batch with polymodal.data.collate."
            )
    elif batch.lengths is not None:
        lengths = batch.lengths.to(values.device)
        mask = torch.arange(length, device=values.device)[None, :] < lengths[:, None]
    else:
        mask = torch.ones(b, length, dtype=torch.bool, device=values.device)
    return mask & batch.present.to(device=values.device, dtype=torch.bool)[:, None]


def zero_invalid(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` (B, L, ...) with the steps where ``mask`` (B, L) is False set to zero."""
    m = mask.to(x.dtype).view(*mask.shape, *([1] * (x.dim() - 2)))
    return x * m


# ---------------------------------------------------------------------------------------
# Masked sequence backbones
# ---------------------------------------------------------------------------------------


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis (dim 1) of (B, C, ...) maps, at each position.

    Normalising each step on its own keeps convolution stacks independent of padding and
    of batch composition (unlike BatchNorm).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Shape:
        x: (B, C, *)
        output: (B, C, *)
        """
        y = x.movedim(1, -1)  # (B, *, C)
        y = F.layer_norm(y, (y.shape[-1],), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class SequenceCNN(nn.Module):
    """Dilated residual 1-D convolutions over valid steps, then a linear map to ``out_dim``.

    Layer ``i`` has dilation ``2**i``; each is conv -> channel LayerNorm -> GELU, with a
    residual connection after the first.  Padded steps are zeroed before every
    convolution, so valid outputs never see padding.  No defaults here: the encoder
    builders (``ts_cnn``) hold them.

    Args:
        in_dim: input channels C.
        out_dim: output features D.
        channels: hidden channels.
        num_layers: convolution layers.
        kernel_size: odd kernel size.
        dropout: dropout after each layer.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        channels: int,
        num_layers: int,
        kernel_size: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SequenceCNN kernel_size must be odd, got {kernel_size}")
        if num_layers < 1:
            raise ValueError(f"SequenceCNN num_layers must be >= 1, got {num_layers}")
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(num_layers):
            dil = 2**i
            self.convs.append(
                nn.Conv1d(
                    in_dim if i == 0 else channels,
                    channels,
                    kernel_size,
                    padding=dil * (kernel_size // 2),
                    dilation=dil,
                )
            )
            self.norms.append(ChannelLayerNorm(channels))
        self.drop = Dropout(dropout)
        self.proj = nn.Linear(channels, out_dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Shape:
        x: (B, T, C)
        mask: (B, T) bool
        output: (B, T, D), zeros at invalid steps
        """
        m = mask.to(x.dtype)[:, None, :]  # (B, 1, T)
        h = x.transpose(1, 2) * m  # (B, C, T)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            y = self.drop(F.gelu(norm(conv(h))))  # (B, channels, T)
            h = (y if i == 0 else h + y) * m
        return zero_invalid(self.proj(h.transpose(1, 2)), mask)  # (B, T, D)


class SequenceGRU(nn.Module):
    """A (bi)directional GRU over each example's valid steps (packed), then a linear map.

    No defaults here: the encoder builders (``ts_gru``, ``audio_gru``, ``video_gru``) hold
    them.

    Args:
        in_dim: input features C.
        out_dim: output features D.
        hidden_dim: GRU hidden size per direction.
        num_layers: stacked GRU layers.
        bidirectional: run both directions and concatenate.
        dropout: dropout between GRU layers.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(
            in_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.proj = nn.Linear(hidden_dim * (2 if bidirectional else 1), out_dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Shape:
        x: (B, T, C)
        mask: (B, T) bool, a prefix of valid steps per row
        output: (B, T, D), zeros at invalid steps
        """
        t = x.shape[1]
        lengths = mask.sum(1).clamp_min(1).cpu()  # (B,); a length-0 row runs one step
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=t)  # (B, T, H*dirs)
        return zero_invalid(self.proj(h), mask)  # (B, T, D)


class SequenceTransformer(nn.Module):
    """Linear embedding + sinusoidal positions + a pre-norm transformer with padding mask.

    No defaults here: the encoder builders (``ts_transformer``, ``audio_transformer``,
    ``video_transformer``) hold them.

    Args:
        in_dim: input features C.
        out_dim: model width D (the output size).
        num_layers: transformer blocks.
        num_heads: attention heads; must divide ``out_dim``.
        mlp_ratio: MLP width as a multiple of D.
        dropout: dropout in the blocks (on the attention weights and the residual branches).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, out_dim)
        self.pos = SinusoidalPositionalEncoding(out_dim)
        self.encoder = TransformerEncoder(
            out_dim, num_layers, num_heads, mlp_ratio, dropout, attn_dropout=dropout
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Shape:
        x: (B, T, C)
        mask: (B, T) bool
        output: (B, T, D), zeros at invalid steps
        """
        h = self.pos(self.embed(x))  # (B, T, D)
        return self.encoder(h, mask)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# Time-series encoders
# ---------------------------------------------------------------------------------------


class TimeSeriesEncoder(Encoder):
    """A masked sequence backbone over (B, T, C) multichannel series, masked-mean pooled.

    Args:
        name: the registered encoder name (for messages).
        spec: the modality (kind ``timeseries``, ``shape=(C,)``).
        backbone: maps ((B, T, C), (B, T) mask) to (B, T, D).
        out_dim: D.
        augment: training-time augmentation, or ``None``; in training mode (when any of
            its strengths is non-zero) each batch's valid steps go through it; in eval mode
            it does nothing.
    """

    kind = ModalityKind.TIMESERIES

    def __init__(
        self,
        name: str,
        spec: ModalitySpec,
        backbone: nn.Module,
        out_dim: int,
        augment: TimeSeriesAugment | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.in_channels = spec_channels(spec, name, "(C,)")
        self.backbone = backbone
        self.out_dim = out_dim
        self.augment = augment

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode a padded batch of series.

        Shape:
            batch.values: (B, T, C)
            batch.mask: (B, T) bool (or batch.lengths: (B,))
            output.sequence: (B, T, D); output.mask: (B, T); output.pooled: (B, D)
        """
        x = tensor_values(batch, self.name, f"(B, T, {self.in_channels})", 3, (self.in_channels,))
        mask = sequence_mask(batch, x, self.name)  # (B, T)
        x = zero_invalid(x, mask)  # (B, T, C)
        if self.training and self.augment is not None and self.augment.active:
            x = self.augment(x, mask)  # (B, T, C)
        seq = self.backbone(x, mask)  # (B, T, D)
        return EncoderOutput(seq, mask, masked_mean(seq, mask))


@ENCODERS.register(
    "ts_cnn",
    "dilated residual 1-D CNN over a multichannel time series",
    kind=ModalityKind.TIMESERIES,
)
def ts_cnn(
    spec: ModalitySpec,
    dim: int = 128,
    channels: int = 64,
    num_layers: int = 3,
    kernel_size: int = 5,
    dropout: float = 0.0,
    augment: dict[str, Any] | None = None,
) -> Encoder:
    """A padding-aware 1-D CNN (receptive field ``1 + (k-1)(2**num_layers - 1)`` steps).

    ``augment`` maps augmentation names to strengths (see
    :class:`~polymodal.layers.timeseries_augment.TimeSeriesAugment`), e.g.
    ``{rotation: 15, scale: 0.1, time_warp: 0.1, jitter: 0.05}``.
    """
    check_spec(spec, "ts_cnn")
    check_dim(dim, "ts_cnn")
    c = spec_channels(spec, "ts_cnn", "(C,)")
    backbone = SequenceCNN(c, dim, channels, num_layers, kernel_size, dropout)
    aug = build_timeseries_augment(augment, "ts_cnn", c)
    return TimeSeriesEncoder("ts_cnn", spec, backbone, dim, aug)


@ENCODERS.register(
    "ts_gru", "bidirectional GRU over a multichannel time series", kind=ModalityKind.TIMESERIES
)
def ts_gru(
    spec: ModalitySpec,
    dim: int = 128,
    hidden_dim: int = 64,
    num_layers: int = 1,
    bidirectional: bool = True,
    dropout: float = 0.0,
    augment: dict[str, Any] | None = None,
) -> Encoder:
    """A (bi)GRU on packed sequences, projected to ``dim``."""
    check_spec(spec, "ts_gru")
    check_dim(dim, "ts_gru")
    c = spec_channels(spec, "ts_gru", "(C,)")
    backbone = SequenceGRU(c, dim, hidden_dim, num_layers, bidirectional, dropout)
    aug = build_timeseries_augment(augment, "ts_gru", c)
    return TimeSeriesEncoder("ts_gru", spec, backbone, dim, aug)


@ENCODERS.register(
    "ts_transformer",
    "transformer encoder over a multichannel time series",
    kind=ModalityKind.TIMESERIES,
)
def ts_transformer(
    spec: ModalitySpec,
    dim: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_ratio: float = 4.0,
    dropout: float = 0.0,
    augment: dict[str, Any] | None = None,
) -> Encoder:
    """Linear step embedding, sinusoidal positions, pre-norm transformer, masked mean."""
    check_spec(spec, "ts_transformer")
    check_dim(dim, "ts_transformer")
    c = spec_channels(spec, "ts_transformer", "(C,)")
    backbone = SequenceTransformer(c, dim, num_layers, num_heads, mlp_ratio, dropout)
    aug = build_timeseries_augment(augment, "ts_transformer", c)
    return TimeSeriesEncoder("ts_transformer", spec, backbone, dim, aug)
