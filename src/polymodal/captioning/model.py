"""A small transformer caption decoder with cross-attention over image features.

::

    features (B, L, F)  -- a frozen encoder's spatial map as a sequence (EfficientNet: 49 x 1280)
      -> LayerNorm, Linear(F, D), + learned position per step         memory (B, L, D)
    tokens (B, T) -> embedding + learned position                     x (B, T, D)
    num_layers x pre-norm block:
        x = x + SelfAttn(LN(x))          causal, SDPA; a KV cache when decoding step by step
        x = x + CrossAttn(LN(x), memory) keys/values of the memory computed once
        x = x + MLP(LN(x))
    LN(x) @ embedding^T                                                logits (B, T, V)

The layers in :mod:`polymodal.layers.transformer` have no causal mask and no cache, which
step-by-step decoding needs, so the attention here is its own (the same SDPA call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import Config, param
from polymodal.layers.dropout import Dropout


@dataclass(frozen=True, kw_only=True)
class CaptionModelConfig(Config):
    """The decoder's architecture.

    Args:
        dim: model width D.
        num_layers: decoder blocks.
        num_heads: attention heads (divide ``dim``).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        dropout: dropout on the embeddings, the memory and the residual branches.
        max_length: the longest caption in decoder tokens, ``[BOS]`` and ``[EOS]`` included.
        memory_length: the most feature steps L (EfficientNet-Lite0 at 224x224: 49).
    """

    dim: int = param(256, ge=8)
    num_layers: int = param(3, ge=1)
    num_heads: int = param(4, ge=1)
    mlp_ratio: float = param(4.0, gt=0)
    dropout: float = param(0.1, ge=0, lt=1)
    max_length: int = param(24, ge=3)
    memory_length: int = param(49, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim % self.num_heads:
            raise ValueError(
                f"model.dim ({self.dim}) must be divisible by model.num_heads "
                f"({self.num_heads}); pick num_heads that divides dim."
            )


#: One block's self-attention cache: keys and values so far, each (B, H, t, Dh).
KV = tuple[Tensor, Tensor]


@dataclass
class DecoderCache:
    """What step-by-step decoding keeps: every block's self-attention keys/values so far and
    its cross-attention keys/values of the memory (computed once)."""

    self_kv: list[KV | None]
    cross_kv: list[KV]
    length: int = 0

    def select(self, rows: Tensor) -> DecoderCache:
        """The cache of the hypotheses ``rows`` (beam search reorders hypotheses)."""
        return DecoderCache(
            [None if kv is None else (kv[0][rows], kv[1][rows]) for kv in self.self_kv],
            [(k[rows], v[rows]) for k, v in self.cross_kv],
            self.length,
        )


class _Attention(nn.Module):
    """Multi-head attention through SDPA; no dropout on the weights (on a CPU it makes
    SDPA fall back to its slow path; the residual branches carry the dropout)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape  # (B, T, D) -> (B, H, T, Dh)
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def keys_values(self, x: Tensor) -> KV:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def attend(self, x: Tensor, kv: KV, causal: bool) -> Tensor:
        q = self.split(self.q(x))  # (B, H, T, Dh)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], is_causal=causal)
        b, _, t, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(b, t, -1))  # type: ignore[no-any-return]


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the memory, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, heads)
        self.cross_attn = _Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, cross_kv: KV, past: KV | None = None) -> tuple[Tensor, KV]:
        """``x`` (B, T, D) -> (B, T, D) and the self-attention keys/values up to now.

        With ``past`` (the keys/values of earlier steps), ``x`` holds the one new step, which
        attends to itself and to ``past``.
        """
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        causal = past is None and x.shape[1] > 1
        x = x + self.drop(self.self_attn.attend(h, (k, v), causal))
        x = x + self.drop(self.cross_attn.attend(self.norm2(x), cross_kv, False))
        x = x + self.drop(self.mlp(self.norm3(x)))
        return x, (k, v)


class CaptionDecoder(nn.Module):
    """Captions from a feature sequence (see the module docstring).

    Args:
        config: the architecture.
        vocab_size: decoder vocabulary size V (the tokenizer's length).
        feature_dim: the encoder's feature size F (EfficientNet-Lite0: 1280).
    """

    def __init__(self, config: CaptionModelConfig, vocab_size: int, feature_dim: int) -> None:
        super().__init__()
        c = config
        self.config, self.vocab_size, self.feature_dim = c, vocab_size, feature_dim
        self.in_norm = nn.LayerNorm(feature_dim)
        self.in_proj = nn.Linear(feature_dim, c.dim)
        self.memory_pos = nn.Parameter(torch.zeros(1, c.memory_length, c.dim))
        self.token = nn.Embedding(vocab_size, c.dim)
        self.pos = nn.Parameter(torch.zeros(1, c.max_length, c.dim))
        self.drop = Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(c.dim, c.num_heads, c.mlp_ratio, c.dropout) for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.dim)
        for p in (self.memory_pos, self.pos, self.token.weight):
            nn.init.normal_(p, std=0.02)

    def encode(self, features: Tensor) -> list[KV]:
        """Every block's cross-attention keys/values of ``features``.

        Shape:
            features: (B, L, F); output: num_layers x ((B, H, L, Dh), (B, H, L, Dh))
        """
        _b, length, f = features.shape
        if f != self.feature_dim or length > self.config.memory_length:
            raise ValueError(
                f"CaptionDecoder: features have shape {tuple(features.shape)}; expected "
                f"(B, L <= {self.config.memory_length}, {self.feature_dim}). Use the encoder "
                "the model was trained with."
            )
        mem = self.in_proj(self.in_norm(features)) + self.memory_pos[:, :length]  # (B, L, D)
        mem = self.drop(mem)
        return [self._block(i).cross_attn.keys_values(mem) for i in range(len(self.blocks))]

    def _block(self, i: int) -> DecoderBlock:
        blk = self.blocks[i]
        assert isinstance(blk, DecoderBlock)
        return blk

    def _embed(self, tokens: Tensor, start: int) -> Tensor:
        t = tokens.shape[1]
        if start + t > self.config.max_length:
            raise ValueError(
                f"CaptionDecoder: position {start + t} is past max_length={self.config.max_length}."
            )
        return self.drop(self.token(tokens) + self.pos[:, start : start + t])  # (B, T, D)

    def _logits(self, x: Tensor) -> Tensor:
        return self.norm(x) @ self.token.weight.t()  # (B, T, V), tied embedding

    def forward(self, features: Tensor, tokens: Tensor, repeats: int = 1) -> Tensor:
        """Teacher-forced logits of every position.

        Args:
            features: the images' feature sequences.
            tokens: the input tokens (``[BOS]`` first), ``repeats`` captions per image in
                image order (Flickr8k: 5).

        Shape:
            features: (B, L, F); tokens: (B * repeats, T); output: (B * repeats, T, V)
        """
        cross = self.encode(features)
        if repeats > 1:
            cross = [
                (k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0)) for k, v in cross
            ]
        x = self._embed(tokens, 0)
        for blk, kv in zip(self.blocks, cross, strict=True):
            x, _ = blk(x, kv)
        return self._logits(x)

    def start(self, features: Tensor) -> DecoderCache:
        """An empty cache for decoding ``features`` (B, L, F) step by step."""
        return DecoderCache([None] * len(self.blocks), self.encode(features))

    def step(self, tokens: Tensor, cache: DecoderCache) -> tuple[Tensor, DecoderCache]:
        """The next-token logits after ``tokens``, with ``cache`` holding the earlier steps.

        The first step may take a whole prefix (attended causally); later ones one token.

        Shape:
            tokens: (B, t), t = 1 once the cache holds steps; output: (B, V) logits of the
            last step
        """
        if cache.length > 0 and tokens.shape[1] != 1:
            raise ValueError(
                f"CaptionDecoder.step: after the first step, pass one new token per row; got "
                f"{tokens.shape[1]}."
            )
        x = self._embed(tokens, cache.length)
        new: list[KV | None] = []
        for blk, past, kv in zip(self.blocks, cache.self_kv, cache.cross_kv, strict=True):
            x, own = blk(x, kv, past)
            new.append(own)
        logits = self._logits(x[:, -1:])[:, 0]  # (B, V)
        return logits, DecoderCache(new, cache.cross_kv, cache.length + tokens.shape[1])


__all__ = ["CaptionDecoder", "CaptionModelConfig", "DecoderBlock", "DecoderCache"]
