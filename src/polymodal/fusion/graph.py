"""Graph fusion: modalities (or their time steps) as nodes, attention-style message passing.

Written in plain torch rather than on torch_geometric: that library is a heavy, compiled
dependency tied to specific torch versions, and the graphs here are small and dense (M
modality nodes, or the few hundred time steps of one example, with every edge present),
which batched dense tensor operations on (B, heads, N, N) handle directly and faster than
sparse edge lists with scatter operations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.errors import unknown_name_error
from polymodal.fusion.base import (
    FUSIONS,
    Fusion,
    check_fusion_inputs,
    check_positive_int,
    check_probability,
    masked_softmax,
    presence_matrix,
    zero_absent,
)
from polymodal.fusion.transformer import valid_sequences
from polymodal.layers.dropout import Dropout
from polymodal.layers.mlp import MLP
from polymodal.layers.transformer import SinusoidalPositionalEncoding
from polymodal.outputs import EncoderOutput, FusionOutput

NODE_KINDS = ("modality", "time")


class GraphAttentionLayer(nn.Module):
    """One pre-norm, multi-head graph-attention layer on a dense graph of N typed nodes.

    Edge scores follow GAT (Veličković et al. 2018): for head k,
    ``e_ij = LeakyReLU(a_dst · W h_i + a_src · W h_j) + A[type_i, type_j]``, where ``A``
    (heads, T, T) is a learned adjacency bias between node types (initialised to zero: a
    plain GAT on the complete graph with self loops).  ``alpha_ij = softmax_j(e_ij)`` over
    the valid nodes j, and node i receives ``sum_j alpha_ij W h_j``.  The update is
    residual, ``h + out(messages)``, followed by a residual MLP.  Invalid nodes send no
    messages and their states are set to zero.  The layer is permutation-equivariant:
    permuting the nodes (with their types) permutes its outputs.

    Args:
        dim: node feature size D.
        num_heads: attention heads; must divide ``dim``.
        num_types: T, the number of node types (the size of the learned adjacency).
        dropout: dropout on attention weights and residual branches.
    """

    def __init__(self, dim: int, num_heads: int, num_types: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        scale = 1.0 / math.sqrt(self.head_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.value = nn.Linear(dim, dim)
        self.att_src = nn.Parameter(torch.randn(num_heads, self.head_dim) * scale)
        self.att_dst = nn.Parameter(torch.randn(num_heads, self.head_dim) * scale)
        self.adjacency = nn.Parameter(torch.zeros(num_heads, num_types, num_types))
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dim, 2 * dim, 2, "gelu", dropout)
        self.drop = Dropout(dropout)

    def attention(self, h: Tensor, mask: Tensor, node_types: Tensor) -> tuple[Tensor, Tensor]:
        """The projected node values and the edge weights.

        Shape:
            h: (B, N, D)
            mask: (B, N) bool, True at valid nodes
            node_types: (N,) long, each node's index into the adjacency
            output: values (B, heads, N, D / heads), weights (B, heads, N, N) (row i: the
                weights node i gives its neighbours j; zero for invalid j)
        """
        b, n, _ = h.shape
        v = self.value(h).view(b, n, self.num_heads, self.head_dim)  # (B, N, H, Dh)
        s_src = (v * self.att_src).sum(-1).transpose(1, 2)  # (B, H, N)
        s_dst = (v * self.att_dst).sum(-1).transpose(1, 2)  # (B, H, N)
        scores = F.leaky_relu(s_dst[..., :, None] + s_src[..., None, :], 0.2)  # (B, H, N, N)
        bias = self.adjacency[:, node_types][:, :, node_types]  # (H, N, N)
        weights = masked_softmax(scores + bias, mask[:, None, None, :], dim=-1)  # (B, H, N, N)
        return v.transpose(1, 2), weights

    def forward(self, h: Tensor, mask: Tensor, node_types: Tensor) -> tuple[Tensor, Tensor]:
        """One round of message passing among the valid nodes.

        Shape:
            h: (B, N, D)
            mask: (B, N) bool, True at valid nodes
            node_types: (N,) long
            output: new states (B, N, D), zero at invalid nodes; edge weights
                (B, heads, N, N) as in :meth:`attention`
        """
        b, n, d = h.shape
        values, weights = self.attention(self.norm1(h), mask, node_types)
        messages = self.drop(weights) @ values  # (B, H, N, Dh)
        messages = messages.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        h = h + self.drop(self.out(messages))
        h = h + self.drop(self.mlp(self.norm2(h)))
        return torch.where(mask[..., None], h, torch.zeros_like(h)), weights


@FUSIONS.register(
    "graph",
    "Modalities (or time steps) as graph nodes; GAT with a learned adjacency bias.",
    kind="feature",
)
class GraphFusion(Fusion):
    """Graph fusion by graph-attention message passing (Veličković et al. 2018, "Graph
    Attention Networks", ICLR), over modality nodes or, as in Yang et al. 2021 ("MTAG:
    Modal-Temporal Attention Graph for Unaligned Human Multimodal Language Sequences",
    NAACL), over the time steps of all modalities.

    ``nodes="modality"``: node m is ``W_m x_m``, modality m's pooled vector projected to
    ``hidden_dim``; N = M.  ``nodes="time"``: every valid step of every modality's sequence
    is a node, ``W_m s_mt`` plus sinusoidal features of its step index t; N = sum_m L_m, so
    the cost is quadratic in the total length (unaligned sequences are fine).  Either way,
    ``num_layers`` rounds of :class:`GraphAttentionLayer` pass messages along the complete graph
    with self loops, with attention-style edge weights plus a learned adjacency bias per
    ordered pair of modalities (the node types, sorted order).  Readout: the layer-normalised
    node states are averaged per modality (over its valid steps for time nodes), then over
    the present modalities.

    Missing modalities: an absent modality's nodes are invalid: they send no messages
    (masked out of every softmax), their states are zero and they are left out of the
    readout.  An example with no modality present gets a zero output.

    Outputs: ``features`` (B, H); ``weights`` (B, M), in sorted-modality order, the attention
    the nodes of each modality receive in the last layer, averaged over heads and over the
    valid receiving nodes (sums to 1 over present modalities, 0 where none is present).

    Args:
        in_dims: modality name -> D_m of its encoder's outputs.
        hidden_dim: H, the node width and fused output size.
        num_heads: attention heads (must divide ``hidden_dim``).
        num_layers: rounds of message passing.
        nodes: ``"modality"`` (one node per modality) or ``"time"`` (one per valid step).
        dropout: dropout on attention weights and residual branches.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden_dim: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        nodes: str = "modality",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims)
        owner = type(self).__name__
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_heads", num_heads)
        check_positive_int(owner, "num_layers", num_layers)
        if hidden_dim % num_heads:
            raise ValueError(
                f"{owner}: 'hidden_dim' must be divisible by 'num_heads', got "
                f"hidden_dim={hidden_dim}, num_heads={num_heads}; pick num_heads that divides "
                "hidden_dim."
            )
        if nodes not in NODE_KINDS:
            raise unknown_name_error("graph node kind", nodes, list(NODE_KINDS))
        dropout = check_probability(owner, "dropout", dropout)
        m = len(self.names)
        self.nodes = nodes
        self.proj = nn.ModuleDict({n: nn.Linear(d, hidden_dim) for n, d in self.in_dims.items()})
        self.pos = SinusoidalPositionalEncoding(hidden_dim)
        self.layers = nn.ModuleList(
            GraphAttentionLayer(hidden_dim, num_heads, m, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self.out_dim = hidden_dim

    def _modality_nodes(
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Nodes (B, M, H), their validity (B, M) and types (M,)."""
        check_fusion_inputs(self, inputs, present)
        h = torch.stack(
            [self.proj[n](zero_absent(inputs[n].pooled, present[n])) for n in self.names], dim=1
        )  # (B, M, H)
        types = torch.arange(len(self.names), device=h.device)
        return h, presence_matrix(self, present), types

    def _time_nodes(
        self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Nodes (B, sum L_m, H), their validity (B, sum L_m) and types (sum L_m,)."""
        seqs = valid_sequences(self, inputs, present)
        h = torch.cat([self.pos(self.proj[n](seqs[n][0])) for n in self.names], dim=1)
        valid = torch.cat([seqs[n][1] for n in self.names], dim=1)  # (B, N)
        lengths = torch.tensor([seqs[n][1].shape[1] for n in self.names], device=h.device)
        types = torch.repeat_interleave(torch.arange(len(self.names), device=h.device), lengths)
        return h, valid, types

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Message passing among the valid nodes, then a per-modality mean readout.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (``pooled`` for modality nodes;
                ``sequence`` and ``mask`` for time nodes).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - inputs[m].sequence: (B, L_m, D_m), used when ``nodes="time"``
            - inputs[m].mask: (B, L_m) bool, used when ``nodes="time"``
            - present[m]: (B,)
            - output.features: (B, H)
            - output.weights: (B, M), sorted-modality order
        """
        if self.nodes == "time":
            h, valid, types = self._time_nodes(inputs, present)
        else:
            h, valid, types = self._modality_nodes(inputs, present)
        h = torch.where(valid[..., None], h, torch.zeros_like(h))  # (B, N, H)
        alpha = h.new_zeros(())
        for layer in self.layers:
            h, alpha = layer(h, valid, types)  # (B, N, H), (B, heads, N, N)
        # one-hot node -> modality map, restricted to valid nodes: (B, N, M)
        member = F.one_hot(types, len(self.names)).to(h.dtype)[None] * valid[..., None]
        per_node = member.sum(dim=1).clamp_min(1.0)  # (B, M) valid nodes per modality
        states = torch.einsum("bnm,bnh->bmh", member, self.norm(h)) / per_node[..., None]
        pres = presence_matrix(self, present).to(h.dtype)  # (B, M)
        has_nodes = (member.sum(dim=1) > 0).to(h.dtype) * pres  # (B, M)
        fused = (states * has_nodes[..., None]).sum(1) / has_nodes.sum(1, keepdim=True).clamp_min(
            1.0
        )  # (B, H)
        received = alpha.mean(dim=1) * valid[..., None].to(h.dtype)  # (B, N, N): valid rows
        received = torch.einsum("bij,bjm->bm", received, member)  # (B, M)
        weights = received / valid.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)
        return FusionOutput(features=fused, weights=weights)


__all__ = ["NODE_KINDS", "GraphAttentionLayer", "GraphFusion"]
