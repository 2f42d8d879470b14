"""Pre-norm transformer blocks on ``F.scaled_dot_product_attention``.

Masks follow one convention everywhere in polymodal: a key padding mask is (B, S) bool,
**True at valid keys**.  A query whose keys are all padding (an absent example, a
length-0 sequence) gets a zero attention output instead of NaN.

* :func:`attend`: ``F.scaled_dot_product_attention``, with heads narrower than 16 features
  zero-padded to 16 on CPU, where the fused kernel runs them faster (the same attention).
* :class:`MultiHeadAttention`: queries from one sequence, keys/values from another
  (or the same); key padding mask.
* :class:`TransformerBlock`: pre-norm self-attention + MLP.
* :class:`CrossAttentionBlock`: pre-norm cross-attention (queries attend to a context
  sequence of another width) + MLP; used by attention fusion.
* :class:`TransformerEncoder`: a stack of blocks with a final LayerNorm.
* :func:`sinusoidal_embedding`, :class:`SinusoidalPositionalEncoding`,
  :class:`LearnedPositionalEmbedding`: positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.layers.dropout import Dropout
from polymodal.layers.mlp import MLP


def sinusoidal_embedding(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of (possibly fractional) positions, as in "Attention is all you need".

    Args:
        positions: (...,) float or integer positions (indices or times in steps).
        dim: output features; even dims hold sines, odd dims cosines.
        max_period: the longest wavelength.

    Shape:
        positions: (...)
        output: (..., dim), float32
    """
    half = (dim + 1) // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, device=positions.device, dtype=torch.float32)
        / half
    )  # (half,)
    angles = positions.to(torch.float32).unsqueeze(-1) * freqs  # (..., half)
    emb = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (..., 2 * half)
    return emb[..., :dim]


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoidal position features; no parameters, any length.

    Args:
        dim: feature size D of the sequences it is applied to.
        max_period: the longest wavelength.
    """

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        self.dim = dim
        self.max_period = max_period

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Add position features to ``x``.

        Args:
            x: the sequence.
            positions: per-step positions (e.g. timestamps in steps); default ``0..L-1``.

        Shape:
            x: (B, L, D)
            positions: (B, L) or (L,)
            output: (B, L, D)
        """
        if positions is None:
            positions = torch.arange(x.shape[1], device=x.device)  # (L,)
        pe = sinusoidal_embedding(positions, self.dim, self.max_period).to(x.dtype)
        return x + pe  # (B, L, D)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned embedding per position ``0..max_len-1``.

    Args:
        max_len: the longest sequence it accepts.
        dim: feature size D.
    """

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Add ``weight[:L]`` to ``x``.

        Shape:
            x: (B, L, D) with L <= max_len
            output: (B, L, D)
        """
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"LearnedPositionalEmbedding holds {self.max_len} positions, got a sequence of "
                f"length {length}; raise max_len or truncate the input."
            )
        return x + self.weight[:length].to(x.dtype)  # (B, L, D)


#: CPU attention pads narrower heads to this size (:func:`cpu_head_dim`).
CPU_MIN_HEAD_DIM = 16


def _check_heads(dim: int, num_heads: int, who: str) -> None:
    if num_heads < 1 or dim % num_heads != 0:
        raise ValueError(
            f"{who}: dim must be divisible by num_heads, got dim={dim}, num_heads={num_heads}; "
            "pick num_heads that divides dim."
        )


def cpu_head_dim(head_dim: int) -> int:
    """The head size at which CPU attention runs ``head_dim``-wide heads fastest.

    PyTorch's fused CPU attention (float32) is vectorised over the head size and runs
    heads narrower than 16 no faster than 16-wide ones: zero-padded to 16, heads of 4-15
    features train 1.1-1.8x faster (forward + backward; 1.5-1.8x for sizes that are not a
    multiple of 4), with AVX-512 and with AVX2 kernels (``benchmarks/attention_heads.py``).
    Wider heads gain little or lose from padding and are kept.
    """
    return max(head_dim, CPU_MIN_HEAD_DIM)


def attend(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """``F.scaled_dot_product_attention`` with the head size padded where CPU runs faster.

    On CPU in float32 without attention dropout (the fused kernel's case), heads of a size
    :func:`cpu_head_dim` pads get zero features appended to q, k and v: q . k and the
    softmax are unchanged (the scale stays ``1 / sqrt(Dh)``), the padded output features
    are zero and are cut off, and so are their gradients.  Elsewhere it is the plain call.

    Shape:
        q: (B, H, L, Dh); k, v: (B, H, S, Dh); attn_mask: broadcastable to (B, H, L, S),
        bool, True where a query may attend; output: (B, H, L, Dh)
    """
    dh = q.shape[-1]
    fused_cpu = q.device.type == "cpu" and q.dtype == torch.float32 and dropout_p == 0.0
    padded = cpu_head_dim(dh) if fused_cpu else dh
    if padded == dh:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    pad = (0, padded - dh)
    out = F.scaled_dot_product_attention(
        F.pad(q, pad), F.pad(k, pad), F.pad(v, pad), attn_mask=attn_mask, scale=dh**-0.5
    )  # (B, H, L, padded)
    return out[..., :dh]


def _all_valid_on_cpu(mask: Tensor) -> bool:
    """Whether a CPU key padding mask marks every key valid (so it can be dropped).

    Checked only on CPU, where reading it back costs nothing (on a GPU it would wait for
    the device), and not while ``torch.compile`` or ``torch.jit.trace`` traces (a
    data-dependent branch would split the graph, or be frozen into it).  Transformers
    libraries drop all-valid masks for the same reason.
    """
    tracing = torch.compiler.is_compiling() or torch.jit.is_tracing()
    return mask.device.type == "cpu" and not tracing and bool(mask.all())


class MultiHeadAttention(nn.Module):
    """Multi-head attention; queries and keys/values may come from different sequences.

    The projections are fused: when keys/values have the queries' width, one ``(3D, D)``
    weight (``in_proj``) holds the query, key and value projections, so self-attention
    projects its input with one matrix product, and cross-attention with two (queries;
    keys and values together).  Otherwise ``q_proj`` and a fused ``kv_proj`` are used.
    Checkpoints with separate ``q_proj``/``k_proj``/``v_proj`` weights (polymodal before
    the fused layout) load unchanged.

    Args:
        dim: feature size of the queries and of the output.
        num_heads: attention heads; must divide ``dim``.
        kv_dim: feature size of the key/value sequence; ``None`` means ``dim``.
        dropout: attention-weight dropout (training only).
        bias: biases on the projections.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kv_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_heads(dim, num_heads, "MultiHeadAttention")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        kv = dim if kv_dim is None else kv_dim
        self.in_proj: nn.Linear | None = None
        self.q_proj: nn.Linear | None = None
        self.kv_proj: nn.Linear | None = None
        if kv == dim:
            self.in_proj = nn.Linear(dim, 3 * dim, bias=bias)  # rows: q, k, v
        else:
            self.q_proj = nn.Linear(dim, dim, bias=bias)
            self.kv_proj = nn.Linear(kv, 2 * dim, bias=bias)  # rows: k, v
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _project(self, query: Tensor, kv: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v of ``query`` and ``kv`` (``None``: self-attention), each (B, *, D)."""
        d = query.shape[-1]
        if self.in_proj is not None:
            if kv is None:
                q, k, v = self.in_proj(query).split(d, dim=-1)  # one product for all three
                return q, k, v
            w, b = self.in_proj.weight, self.in_proj.bias
            q = F.linear(query, w[:d], None if b is None else b[:d])
            k, v = F.linear(kv, w[d:], None if b is None else b[d:]).split(d, dim=-1)
            return q, k, v
        assert self.q_proj is not None and self.kv_proj is not None
        k, v = self.kv_proj(query if kv is None else kv).split(d, dim=-1)
        return self.q_proj(query), k, v

    def _load_from_state_dict(
        self, state_dict: dict[str, Tensor], prefix: str, *args: object, **kwargs: object
    ) -> None:
        """Fuse the separate q/k/v projections of checkpoints written before the fused layout."""
        if f"{prefix}k_proj.weight" in state_dict:
            for t in ("weight", "bias"):
                if f"{prefix}k_proj.{t}" not in state_dict:
                    continue
                q, k, v = (state_dict.pop(f"{prefix}{n}_proj.{t}") for n in "qkv")
                if self.in_proj is not None:
                    state_dict[f"{prefix}in_proj.{t}"] = torch.cat([q, k, v])
                else:
                    state_dict[f"{prefix}q_proj.{t}"] = q
                    state_dict[f"{prefix}kv_proj.{t}"] = torch.cat([k, v])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def forward(
        self,
        query: Tensor,
        key_value: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from ``query`` to ``key_value`` (self-attention when it is ``None``).

        Args:
            query: the sequence that asks.
            key_value: the sequence attended to; default ``query``.
            key_padding_mask: True at valid keys; default all valid.

        Shape:
            query: (B, L, D)
            key_value: (B, S, D_kv)
            key_padding_mask: (B, S) bool
            output: (B, L, D)
        """
        b, lq, d = query.shape
        s = lq if key_value is None else key_value.shape[1]
        q, k, v = self._project(query, key_value)  # (B, L, D), (B, S, D), (B, S, D)
        q = q.view(b, lq, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        # q: (B, H, L, Dh); k, v: (B, H, S, Dh)
        attn_mask = None
        any_valid = None
        if key_padding_mask is not None and _all_valid_on_cpu(key_padding_mask):
            key_padding_mask = None  # the same attention; the CPU kernel is ~5% faster unmasked
        if key_padding_mask is not None:
            valid = key_padding_mask.to(torch.bool)  # (B, S)
            any_valid = valid.any(dim=1)  # (B,)
            # A row without valid keys attends everywhere (finite) and is zeroed below.
            safe = valid | ~any_valid[:, None]  # (B, S)
            attn_mask = safe[:, None, None, :]  # (B, 1, 1, S)
        out = attend(
            q, k, v, attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, Dh)
        out = out.transpose(1, 2).reshape(b, lq, d)  # (B, L, D)
        if any_valid is not None:
            out = out * any_valid.to(out.dtype)[:, None, None]
        return self.out_proj(out)  # type: ignore[no-any-return]


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    Args:
        dim: feature size D.
        num_heads: attention heads; must divide ``dim``.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        dropout: dropout on the residual branches (after attention, and in and after the MLP).
        activation: the MLP's activation.
        attn_dropout: dropout on the attention weights (default 0, as in timm: with 0,
            ``scaled_dot_product_attention`` keeps its fused kernels while training).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        activation: str = "gelu",
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dim, int(dim * mlp_ratio), 2, activation, dropout)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Self-attention over valid steps, then a position-wise MLP.

        Shape:
            x: (B, L, D)
            mask: (B, L) bool, True at valid steps
            output: (B, L, D)
        """
        x = x + self.drop(self.attn(self.norm1(x), key_padding_mask=mask))  # (B, L, D)
        return x + self.drop(self.mlp(self.norm2(x)))  # type: ignore[no-any-return]


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention block: queries ``x`` attend to ``context``, then an MLP.

    ``x + attn(norm_q(x), norm_kv(context))``, then ``x + mlp(norm(x))``.

    Args:
        dim: feature size of ``x`` and of the output.
        num_heads: attention heads; must divide ``dim``.
        context_dim: feature size of ``context``; ``None`` means ``dim``.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        dropout: dropout on the residual branches (after attention, and in and after the MLP).
        activation: the MLP's activation.
        attn_dropout: dropout on the attention weights (default 0; see
            :class:`TransformerBlock`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        context_dim: int | None = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        activation: str = "gelu",
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cdim = dim if context_dim is None else context_dim
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(cdim)
        self.attn = MultiHeadAttention(dim, num_heads, kv_dim=cdim, dropout=attn_dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dim, int(dim * mlp_ratio), 2, activation, dropout)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """Attend from ``x`` to the valid steps of ``context``.

        Shape:
            x: (B, L, D)
            context: (B, S, D_ctx)
            context_mask: (B, S) bool, True at valid context steps
            output: (B, L, D)
        """
        att = self.attn(self.norm_q(x), self.norm_kv(context), key_padding_mask=context_mask)
        x = x + self.drop(att)  # (B, L, D)
        return x + self.drop(self.mlp(self.norm2(x)))  # type: ignore[no-any-return]


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerBlock` with a final LayerNorm; padded steps output zeros.

    Args:
        dim: feature size D.
        depth: number of blocks.
        num_heads: attention heads; must divide ``dim``.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        dropout: dropout on the blocks' residual branches.
        activation: the MLPs' activation.
        attn_dropout: dropout on the attention weights (default 0).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        activation: str = "gelu",
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"TransformerEncoder depth must be >= 1, got {depth}")
        _check_heads(dim, num_heads, "TransformerEncoder")
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout, activation, attn_dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encode ``x``; keys at padded steps are ignored and padded outputs set to zero.

        Shape:
            x: (B, L, D)
            mask: (B, L) bool, True at valid steps
            output: (B, L, D)
        """
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)  # (B, L, D)
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        return x
