"""Pooling a sequence of features into one vector: learned attention pooling.

:class:`AttentionPool` weighs the steps of a sequence (an image encoder's spatial map, say)
by a learned, content-dependent softmax per head instead of averaging them.  Its scores
start at zero, so a freshly built pool *is* mean pooling: put in front of a projection that
was trained on mean-pooled features, it starts from the same model and can only learn to
look at some regions more than others.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AttentionPool(nn.Module):
    """Multi-head attention pooling with learned queries and the features as values.

    Each of ``num_heads`` heads owns ``dim / num_heads`` channels; head ``h`` scores every
    step from the LayerNorm'd features (``score = w_h . norm(x_t) + b_h``, one linear map for
    all heads), softmaxes the scores over the steps, and averages its channels with those
    weights.  The values are the features themselves (no value projection), so the output
    has the input's size and scale, and zero scores (the initial state) give the plain mean.

    Args:
        dim: feature size D; must be divisible by ``num_heads``.
        num_heads: heads (groups of channels with their own weights over the steps).

    Shape:
        x: (B, L, D); mask: (B, L) bool, True at valid steps (``None``: all valid; every row
        needs one valid step); output: (B, D).
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(
                f"AttentionPool: dim must be divisible by num_heads, got dim={dim}, "
                f"num_heads={num_heads}; pick num_heads that divides {dim}."
            )
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, num_heads)
        nn.init.zeros_(self.score.weight)  # zero scores: mean pooling until trained
        nn.init.zeros_(self.score.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, length, d = x.shape
        scores = self.score(self.norm(x))  # (B, L, H)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, :, None], float("-inf"))
        weights = scores.softmax(dim=1)  # (B, L, H), sums to 1 over the steps
        heads = x.view(b, length, self.num_heads, d // self.num_heads)  # (B, L, H, D/H)
        pooled = torch.einsum("blh,blhc->bhc", weights, heads)  # (B, H, D/H)
        return pooled.reshape(b, d)  # (B, D)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


__all__ = ["AttentionPool"]
