"""Transformer fusions over the modalities' sequences: MulT, co-attention, bottleneck (MBT).

All three read ``EncoderOutput.sequence`` (B, L_m, D_m) and ``mask`` (B, L_m), project each
modality to a common width ``hidden_dim``, add sinusoidal positions and run attention blocks
from :mod:`polymodal.layers.transformer` (``F.scaled_dot_product_attention``), so sequences
of different lengths (unaligned) are handled by key padding masks, never by loops over
time.  A step is valid when its mask is True *and* its modality is present in the
example; invalid steps are zeroed with ``torch.where`` before anything else and never
serve as attention keys, so an encoder's values at absent rows cannot reach the output.
Each modality's stream is pooled by a masked mean over its valid steps; an absent
modality's pooled vector is zero.

``missing_token=True`` (all three) learns one token per modality that stands in for it
where it is absent: the stream of an absent modality is that single step, which the other
streams attend to and which is pooled like any stream, so the model can learn what "this
modality is missing" means instead of reading zeros (learnable stand-ins in the spirit of
Lee et al. 2023, "Multimodal Prompting with Missing Modalities for Visual Recognition",
CVPR).  Rows where the modality is present never see its token.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from polymodal.encoders.base import masked_mean
from polymodal.fusion.base import (
    FUSIONS,
    Fusion,
    check_fusion_inputs,
    check_positive_int,
    check_probability,
    presence_matrix,
    zero_absent,
)
from polymodal.layers.transformer import (
    CrossAttentionBlock,
    SinusoidalPositionalEncoding,
    TransformerBlock,
    TransformerEncoder,
)
from polymodal.outputs import EncoderOutput, FusionOutput


def valid_sequences(
    fusion: Fusion, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Check the sequences and return, per modality, (zeroed sequence, valid-step mask).

    The valid mask is ``mask & present[:, None]``; the sequence is zero wherever it is False.

    Shape:
        output[m]: ((B, L_m, D_m), (B, L_m) bool)
    """
    batch_size = check_fusion_inputs(fusion, inputs, present)
    owner = type(fusion).__name__
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in fusion.names:
        seq, mask = inputs[name].sequence, inputs[name].mask
        d = fusion.in_dims[name]
        if seq.dim() != 3 or seq.shape[0] != batch_size or seq.shape[2] != d:
            raise ValueError(
                f"{owner}: modality {name!r} sequence must have shape ({batch_size}, L, {d}), "
                f"got {tuple(seq.shape)}. {owner} fuses sequences; pass the encoder's output."
            )
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(seq.shape[:2]):
            raise ValueError(
                f"{owner}: modality {name!r} mask must be a {tuple(seq.shape[:2])} bool tensor "
                f"(True at valid steps), got shape {tuple(mask.shape)} and dtype {mask.dtype}."
            )
        valid = mask & present[name][:, None]  # (B, L)
        out[name] = (torch.where(valid[..., None], seq, torch.zeros_like(seq)), valid)
    return out


def _check_attention_sizes(owner: str, hidden_dim: int, num_heads: int, num_layers: int) -> None:
    check_positive_int(owner, "hidden_dim", hidden_dim)
    check_positive_int(owner, "num_heads", num_heads)
    check_positive_int(owner, "num_layers", num_layers)
    if hidden_dim % num_heads:
        raise ValueError(
            f"{owner}: 'hidden_dim' must be divisible by 'num_heads', got hidden_dim={hidden_dim}, "
            f"num_heads={num_heads}; pick num_heads that divides hidden_dim."
        )


def _check_flag(owner: str, missing_token: bool) -> bool:
    if not isinstance(missing_token, bool):
        raise TypeError(f"{owner}: 'missing_token' must be true or false, got {missing_token!r}.")
    return missing_token


def _check_two_modalities(fusion: Fusion) -> None:
    if len(fusion.names) < 2:
        raise ValueError(
            f"{type(fusion).__name__} attends across modalities and needs at least two in "
            f"in_dims, got {fusion.names}. Use a unimodal model or another fusion."
        )


class _Embed(nn.Module):
    """Per-modality linear projection to ``hidden_dim`` plus sinusoidal positions, and the
    optional learned missing-modality tokens (see :meth:`streams`)."""

    def __init__(self, in_dims: dict[str, int], hidden_dim: int, missing_token: bool) -> None:
        super().__init__()
        self.proj = nn.ModuleDict({n: nn.Linear(d, hidden_dim) for n, d in in_dims.items()})
        self.pos = SinusoidalPositionalEncoding(hidden_dim)
        self.missing = (
            nn.ParameterDict({n: nn.Parameter(torch.randn(hidden_dim) * 0.02) for n in in_dims})
            if missing_token
            else None
        )

    def forward(self, name: str, seq: Tensor) -> Tensor:
        """Shape: seq (B, L, D_m) -> (B, L, hidden_dim)."""
        return self.pos(self.proj[name](seq))  # type: ignore[no-any-return]

    def streams(
        self, seqs: dict[str, tuple[Tensor, Tensor]], present: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Embedded streams, their valid masks, and the presence the fusion should use.

        Without missing tokens: the projected sequences, their masks, ``present`` as given.
        With them, each stream gets one more step, its modality's learned token, valid
        exactly where the modality is absent; the fusion then attends to and pools that
        token instead of nothing, and every stream counts as present.

        Shape:
            seqs[m]: ((B, L_m, D_m), (B, L_m)); present[m]: (B,)
            output: x[m] (B, L_m (+ 1), d), valid[m] (B, L_m (+ 1)), present[m] (B,)
        """
        x = {n: self(n, seqs[n][0]) for n in seqs}  # (B, L_n, d) each
        valid = {n: seqs[n][1] for n in seqs}  # (B, L_n) each
        if self.missing is None:
            return x, valid, present
        for n in seqs:
            b, _, d = x[n].shape
            token = self.missing[n].to(x[n].dtype).expand(b, 1, d)  # (B, 1, d)
            x[n] = torch.cat([x[n], token], dim=1)  # (B, L_n + 1, d)
            valid[n] = torch.cat([valid[n], ~present[n][:, None]], dim=1)  # (B, L_n + 1)
        everyone = {n: torch.ones_like(present[n]) for n in seqs}
        return x, valid, everyone


# --------------------------------------------------------------------------- MulT


@FUSIONS.register(
    "mult",
    "MulT: directional cross-modal attention between unaligned sequences, pooled.",
    kind="feature",
)
class MulTFusion(Fusion):
    """Multimodal Transformer (Tsai et al. 2019, "Multimodal Transformer for Unaligned
    Multimodal Language Sequences", ACL), for any M >= 2 modalities.

    Every modality's sequence is projected to ``hidden_dim`` (a kernel-1 temporal convolution,
    i.e. a linear map per step) with sinusoidal positions.  For every target modality t and
    every other (source) modality s, a directional cross-modal transformer of ``num_layers``
    pre-norm blocks lets t's steps attend to s's steps (queries from t, keys/values the
    layer-normalised low-level features of s, re-used at every layer as in the paper), for
    sequences of different lengths (unaligned).  The M - 1 outputs of target t are
    concatenated feature-wise, (B, L_t, (M - 1) hidden_dim), passed through a self-attention
    transformer of ``num_layers`` blocks, and pooled by a masked mean over t's valid steps.  The
    M pooled vectors are concatenated: out_dim = M (M - 1) hidden_dim.

    Missing modalities: an absent source is masked out as attention keys, so its
    cross-modal blocks add no attention and only pass the target's own stream through
    their residual and MLP paths (the target keeps a representation of itself: with
    modality dropout, a fusion that zeroed these chunks would see nothing of the image in
    an audio-less example); an absent target contributes a zero vector.  With no modality
    present the output is zeros.

    Args:
        in_dims: modality name -> D_m of its encoder's sequence features.
        hidden_dim: common width of the cross-modal streams.
        num_heads: attention heads (must divide ``hidden_dim``).
        num_layers: blocks in each cross-modal transformer and in each self-attention stack.
        dropout: dropout on the residual branches.
        attn_dropout: dropout on the attention weights (default 0, so training keeps the
            fused attention kernels of ``scaled_dot_product_attention``).
        missing_token: learn one token per modality that stands in for it where it is
            absent (see the module docstring; train with modality dropout so it is seen).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden_dim: int = 32,
        num_heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.0,
        missing_token: bool = False,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        _check_two_modalities(self)
        _check_attention_sizes(owner, hidden_dim, num_heads, num_layers)
        dropout = check_probability(owner, "dropout", dropout)
        attn_dropout = check_probability(owner, "attn_dropout", attn_dropout)
        m = len(self.names)
        self.embed = _Embed(self.in_dims, hidden_dim, _check_flag(owner, missing_token))
        self.cross = nn.ModuleDict(
            {
                t: nn.ModuleDict(
                    {
                        s: nn.ModuleList(
                            CrossAttentionBlock(
                                hidden_dim, num_heads, dropout=dropout, attn_dropout=attn_dropout
                            )
                            for _ in range(num_layers)
                        )
                        for s in self.names
                        if s != t
                    }
                )
                for t in self.names
            }
        )
        self.memory = nn.ModuleDict(
            {
                t: TransformerEncoder(
                    (m - 1) * hidden_dim,
                    num_layers,
                    num_heads,
                    dropout=dropout,
                    attn_dropout=attn_dropout,
                )
                for t in self.names
            }
        )
        self.out_dim = m * (m - 1) * hidden_dim

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Cross-modal attention between every ordered pair, self-attention, pooling.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (``sequence`` and ``mask``).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].sequence: (B, L_m, D_m), lengths may differ across modalities
            - inputs[m].mask: (B, L_m) bool
            - present[m]: (B,)
            - output.features: (B, M (M - 1) hidden_dim)
        """
        seqs = valid_sequences(self, inputs, present)
        # (B, L_n, d) and (B, L_n) each; with missing tokens L_n + 1 and every stream present
        x, valid, present = self.embed.streams(seqs, present)
        pooled: list[Tensor] = []
        for t in self.names:
            chunks: list[Tensor] = []
            for s in self.names:
                if s == t:
                    continue
                h = x[t]  # (B, L_t, d)
                for block in cast(nn.ModuleList, cast(nn.ModuleDict, self.cross[t])[s]):
                    h = block(h, x[s], valid[s])  # (B, L_t, d)
                # An absent source has no valid keys: attention adds nothing and the residual
                # path carries t's own features through, so t keeps a representation.
                chunks.append(h)
            h = self.memory[t](torch.cat(chunks, dim=-1), valid[t])  # (B, L_t, (M - 1) d)
            pooled.append(zero_absent(masked_mean(h, valid[t]), present[t]))
        return FusionOutput(features=torch.cat(pooled, dim=1))  # (B, M (M - 1) d)


# --------------------------------------------------------------------------- co-attention


@FUSIONS.register(
    "coattention",
    "ViLBERT co-attention: each stream attends to the others, then to itself.",
    kind="feature",
)
class CoAttentionFusion(Fusion):
    """Co-attentional transformer streams (Lu et al. 2019, "ViLBERT: Pretraining
    Task-Agnostic Visiolinguistic Representations for Vision-and-Language Tasks", NeurIPS).

    Each modality keeps its own stream of width ``hidden_dim`` (projected sequence plus
    sinusoidal positions).  A layer has two steps, run in every stream from the previous
    layer's states: a co-attention block (ViLBERT's Co-TRM: queries from the stream,
    keys/values from the other modality, then an MLP) and a self-attention block (TRM).
    With M > 2 modalities, each stream co-attends to the concatenation along time of all the
    other streams (sorted order), with their padding masks; for M = 2 this is ViLBERT's
    two-stream layer.  Each stream is layer-normalised and pooled by a masked mean over its
    valid steps; the M pooled vectors are concatenated: out_dim = M hidden_dim.

    Missing modalities: an absent modality's steps are masked out as keys of the other
    streams, and its own pooled vector is zero.  With no modality present the output is
    zeros.

    Args:
        in_dims: modality name -> D_m of its encoder's sequence features.
        hidden_dim: width of every stream.
        num_heads: attention heads (must divide ``hidden_dim``).
        num_layers: co-attention + self-attention layers.
        dropout: dropout on the residual branches.
        attn_dropout: dropout on the attention weights (default 0, so training keeps the
            fused attention kernels of ``scaled_dot_product_attention``).
        missing_token: learn one token per modality that stands in for it where it is
            absent (see the module docstring; train with modality dropout so it is seen).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden_dim: int = 32,
        num_heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.0,
        missing_token: bool = False,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        _check_two_modalities(self)
        _check_attention_sizes(owner, hidden_dim, num_heads, num_layers)
        dropout = check_probability(owner, "dropout", dropout)
        attn_dropout = check_probability(owner, "attn_dropout", attn_dropout)
        self.embed = _Embed(self.in_dims, hidden_dim, _check_flag(owner, missing_token))
        self.co_blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    n: CrossAttentionBlock(
                        hidden_dim, num_heads, dropout=dropout, attn_dropout=attn_dropout
                    )
                    for n in self.names
                }
            )
            for _ in range(num_layers)
        )
        self.self_blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    n: TransformerBlock(
                        hidden_dim, num_heads, dropout=dropout, attn_dropout=attn_dropout
                    )
                    for n in self.names
                }
            )
            for _ in range(num_layers)
        )
        self.norm = nn.ModuleDict({n: nn.LayerNorm(hidden_dim) for n in self.names})
        self.out_dim = len(self.names) * hidden_dim

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Co-attention and self-attention in every stream, then pooling.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (``sequence`` and ``mask``).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].sequence: (B, L_m, D_m), lengths may differ across modalities
            - inputs[m].mask: (B, L_m) bool
            - present[m]: (B,)
            - output.features: (B, M hidden_dim)
        """
        seqs = valid_sequences(self, inputs, present)
        # (B, L_n, d) and (B, L_n) each; with missing tokens L_n + 1 and every stream present
        x, valid, present = self.embed.streams(seqs, present)
        for co_layer, sa_layer in zip(self.co_blocks, self.self_blocks, strict=True):
            co, sa = cast(nn.ModuleDict, co_layer), cast(nn.ModuleDict, sa_layer)
            attended = {}
            for n in self.names:
                others = [s for s in self.names if s != n]
                context = torch.cat([x[s] for s in others], dim=1)  # (B, sum L_s, d)
                context_mask = torch.cat([valid[s] for s in others], dim=1)  # (B, sum L_s)
                attended[n] = co[n](x[n], context, context_mask)  # (B, L_n, d)
            x = {n: sa[n](attended[n], valid[n]) for n in self.names}
        pooled = [
            zero_absent(masked_mean(self.norm[n](x[n]), valid[n]), present[n]) for n in self.names
        ]  # (B, d) each
        return FusionOutput(features=torch.cat(pooled, dim=1))  # (B, M d)


# --------------------------------------------------------------------------- bottleneck


@FUSIONS.register(
    "bottleneck",
    "MBT: per-modality transformers exchanging through shared bottleneck tokens.",
    kind="feature",
)
class BottleneckFusion(Fusion):
    """Multimodal Bottleneck Transformer (Nagrani et al. 2021, "Attention Bottlenecks for
    Multimodal Fusion", NeurIPS), for any number of modalities.

    Each modality has its own transformer stream (projected sequence plus sinusoidal
    positions, ``num_layers`` pre-norm blocks, separate weights per modality).  From layer
    ``fusion_layer`` on, ``num_bottlenecks`` shared bottleneck tokens z (learned initial
    values) are appended to every stream: stream m runs its block over ``[x_m; z]`` and
    returns ``[x_m'; z_m']``, and the new bottleneck is the average of the ``z_m'``.
    Cross-modal information therefore flows only through the few bottleneck tokens: the
    average of layer l reaches the streams in layer l + 1.  Earlier layers are unimodal.
    Each stream is layer-normalised and pooled by a masked mean over its valid steps; the M
    pooled vectors and the mean of the final (layer-normalised) bottleneck tokens are
    concatenated, so the last layer's exchange is used too: out_dim = (M + 1) hidden_dim.

    Missing modalities: an absent modality's steps are masked out as keys of its stream,
    its bottleneck update is excluded from the average (the average is over present
    modalities), and its pooled vector is zero.  With no modality present the bottleneck
    keeps its previous value (the learned initial tokens), so the output is zeros followed
    by a learned constant: finite.

    Args:
        in_dims: modality name -> D_m of its encoder's sequence features.
        hidden_dim: width of every stream and of the bottleneck tokens.
        num_heads: attention heads (must divide ``hidden_dim``).
        num_layers: transformer blocks per stream.
        num_bottlenecks: number of shared bottleneck tokens.
        fusion_layer: index of the first layer that uses the bottleneck (0 = all layers).
        dropout: dropout on the residual branches.
        attn_dropout: dropout on the attention weights (default 0, so training keeps the
            fused attention kernels of ``scaled_dot_product_attention``).
        missing_token: learn one token per modality that stands in for it where it is
            absent (see the module docstring; train with modality dropout so it is seen).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden_dim: int = 32,
        num_heads: int = 4,
        num_layers: int = 2,
        num_bottlenecks: int = 4,
        fusion_layer: int = 0,
        dropout: float = 0.0,
        missing_token: bool = False,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        _check_attention_sizes(owner, hidden_dim, num_heads, num_layers)
        check_positive_int(owner, "num_bottlenecks", num_bottlenecks)
        check_positive_int(owner, "fusion_layer", fusion_layer, minimum=0)
        if fusion_layer >= num_layers:
            raise ValueError(
                f"{owner}: 'fusion_layer' must be below 'num_layers' ({num_layers}) so that at "
                f"least one layer exchanges information through the bottleneck, got {fusion_layer}."
            )
        dropout = check_probability(owner, "dropout", dropout)
        attn_dropout = check_probability(owner, "attn_dropout", attn_dropout)
        self.embed = _Embed(self.in_dims, hidden_dim, _check_flag(owner, missing_token))
        self.bottleneck = nn.Parameter(torch.randn(num_bottlenecks, hidden_dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    n: TransformerBlock(
                        hidden_dim, num_heads, dropout=dropout, attn_dropout=attn_dropout
                    )
                    for n in self.names
                }
            )
            for _ in range(num_layers)
        )
        self.norm = nn.ModuleDict({n: nn.LayerNorm(hidden_dim) for n in self.names})
        self.bottleneck_norm = nn.LayerNorm(hidden_dim)
        self.fusion_layer = fusion_layer
        self.out_dim = (len(self.names) + 1) * hidden_dim

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Per-modality streams exchanging information through shared bottleneck tokens.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (``sequence`` and ``mask``).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].sequence: (B, L_m, D_m), lengths may differ across modalities
            - inputs[m].mask: (B, L_m) bool
            - present[m]: (B,)
            - output.features: (B, (M + 1) hidden_dim)
        """
        seqs = valid_sequences(self, inputs, present)
        # (B, L_n, d) and (B, L_n) each; with missing tokens L_n + 1 and every stream present
        x, valid, present = self.embed.streams(seqs, present)
        pres = presence_matrix(self, present)  # (B, M)
        b = pres.shape[0]
        z = self.bottleneck[None].expand(b, -1, -1).to(x[self.names[0]].dtype)  # (B, N_b, d)
        z_valid = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)  # (B, N_b)
        flags = pres.to(z.dtype)[:, :, None, None]  # (B, M, 1, 1)
        count = flags.sum(dim=1)  # (B, 1, 1)
        for i, block_layer in enumerate(self.blocks):
            layer = cast(nn.ModuleDict, block_layer)
            if i < self.fusion_layer:
                x = {n: layer[n](x[n], valid[n]) for n in self.names}
                continue
            updates: list[Tensor] = []
            for n in self.names:
                length = x[n].shape[1]
                out = layer[n](torch.cat([x[n], z], dim=1), torch.cat([valid[n], z_valid], dim=1))
                x[n] = out[:, :length]  # (B, L_n, d)
                updates.append(out[:, length:])  # (B, N_b, d)
            stacked = torch.stack(updates, dim=1)  # (B, M, N_b, d)
            stacked = torch.where(flags > 0, stacked, torch.zeros_like(stacked))
            average = stacked.sum(dim=1) / count.clamp_min(1.0)  # (B, N_b, d)
            z = torch.where(count > 0, average, z)  # nothing present: keep z
        pooled = [
            zero_absent(masked_mean(self.norm[n](x[n]), valid[n]), present[n]) for n in self.names
        ]  # (B, d) each
        pooled.append(self.bottleneck_norm(z).mean(dim=1))  # (B, d)
        return FusionOutput(features=torch.cat(pooled, dim=1))  # (B, (M + 1) d)


__all__ = [
    "BottleneckFusion",
    "CoAttentionFusion",
    "MulTFusion",
    "valid_sequences",
]
