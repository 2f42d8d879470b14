"""Graph fusion: modalities as nodes of a dense graph, attention-style message passing.

Written in plain torch rather than on torch_geometric: that library is a heavy, compiled
dependency tied to specific torch versions, and the graphs here are tiny and dense (M nodes,
M^2 edges, one graph per example), which batched tensor operations on (B, M, M) handle
directly and faster than sparse edge lists.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.encoders.base import EncoderOutput
from polymodal.fusion.attention import masked_softmax, presence_matrix, zero_absent
from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput
from polymodal.fusion.concat import check_fusion_inputs, check_positive_int, check_probability
from polymodal.layers.mlp import MLP


class GraphAttentionLayer(nn.Module):
    """One pre-norm, multi-head graph-attention layer on a dense graph of N nodes.

    Edge scores follow GAT (Veličković et al. 2018): for head k,
    ``e_ij = LeakyReLU(a_dst · W h_i + a_src · W h_j) + A_ij``, where ``A`` (heads, N, N) is a
    learned adjacency bias (initialised to zero: a plain GAT on the complete graph with self
    loops).  ``alpha_ij = softmax_j(e_ij)`` over the valid nodes j, and node i receives
    ``sum_j alpha_ij W h_j``.  The update is residual, ``h + out(messages)``, followed by a
    residual MLP.  Invalid nodes send no messages and their states are set to zero.

    Args:
        dim: node feature size D.
        num_heads: attention heads; must divide ``dim``.
        num_nodes: N, the size of the learned adjacency.
        dropout: dropout on attention weights and residual branches.
    """

    def __init__(self, dim: int, num_heads: int, num_nodes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.value = nn.Linear(dim, dim)
        self.att_src = nn.Parameter(
            torch.randn(num_heads, self.head_dim) / math.sqrt(self.head_dim)
        )
        self.att_dst = nn.Parameter(
            torch.randn(num_heads, self.head_dim) / math.sqrt(self.head_dim)
        )
        self.adjacency = nn.Parameter(torch.zeros(num_heads, num_nodes, num_nodes))
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dim, 2 * dim, 2, "gelu", dropout)
        self.drop = nn.Dropout(dropout)

    def attention(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The projected node values and the edge weights.

        Shape:
            h: (B, N, D)
            mask: (B, N) bool, True at valid nodes
            output: values (B, heads, N, D / heads), weights (B, heads, N, N) (row i: the
                weights node i gives its neighbours j; zero for invalid j)
        """
        b, n, _ = h.shape
        v = self.value(h).view(b, n, self.num_heads, self.head_dim)  # (B, N, H, Dh)
        s_src = (v * self.att_src).sum(-1).transpose(1, 2)  # (B, H, N)
        s_dst = (v * self.att_dst).sum(-1).transpose(1, 2)  # (B, H, N)
        scores = F.leaky_relu(s_dst[..., :, None] + s_src[..., None, :], 0.2)  # (B, H, N, N)
        scores = scores + self.adjacency  # (B, H, N, N)
        weights = masked_softmax(scores, mask[:, None, None, :], dim=-1)  # (B, H, N, N)
        return v.transpose(1, 2), weights

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One round of message passing among the valid nodes.

        Shape:
            h: (B, N, D)
            mask: (B, N) bool, True at valid nodes
            output: new states (B, N, D), zero at invalid nodes; edge weights
                (B, heads, N, N) as in :meth:`attention`
        """
        b, n, d = h.shape
        values, weights = self.attention(self.norm1(h), mask)
        messages = self.drop(weights) @ values  # (B, H, N, Dh)
        messages = messages.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        h = h + self.drop(self.out(messages))
        h = h + self.drop(self.mlp(self.norm2(h)))
        return torch.where(mask[..., None], h, torch.zeros_like(h)), weights


class GraphFusion(Fusion):
    """Graph fusion: each modality is a node, fused by graph-attention message passing
    (Veličković et al. 2018, "Graph Attention Networks", ICLR; modality graphs as in Yang et
    al. 2021, "MTAG: Modal-Temporal Attention Graph for Unaligned Human Multimodal Language
    Sequences", NAACL).

    Node m starts as ``W_m x_m`` (its pooled vector projected to ``hidden_dim``).  ``layers``
    rounds of :class:`GraphAttentionLayer` pass messages along the complete graph with
    self loops, with attention-style edge weights plus a learned adjacency bias per ordered
    pair of modalities (sorted order).  The readout is the mean of the layer-normalised
    states of the present nodes.  Nodes are modalities (one pooled vector each); the
    time-step nodes of MTAG are not modelled here.

    Missing modalities: an absent modality's node is invalid: it sends no messages (masked
    out of every softmax), its state is zero and it is left out of the readout.  An example
    with no modality present gets a zero output.

    Outputs: ``fused`` (B, H); ``weights`` (B, M), in sorted-modality order, the attention
    each node receives in the last layer, averaged over heads and over the present
    receiving nodes (sums to 1 over present modalities, 0 where none is present).

    Args:
        in_dims: modality name -> D_m of its encoder's pooled output.
        num_outputs: prediction size (unused: graph fusion is feature-level).
        hidden_dim: H, the node width and fused output size.
        heads: attention heads (must divide ``hidden_dim``).
        layers: rounds of message passing.
        dropout: dropout on attention weights and residual branches.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        hidden_dim: int = 64,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims, num_outputs)
        owner = type(self).__name__
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "heads", heads)
        check_positive_int(owner, "layers", layers)
        if hidden_dim % heads:
            raise ValueError(
                f"{owner}: 'hidden_dim' must be divisible by 'heads', got "
                f"hidden_dim={hidden_dim}, heads={heads}; pick heads that divides hidden_dim."
            )
        dropout = check_probability(owner, "dropout", dropout)
        m = len(self.names)
        self.proj = nn.ModuleDict({n: nn.Linear(d, hidden_dim) for n, d in self.in_dims.items()})
        self.layers = nn.ModuleList(
            GraphAttentionLayer(hidden_dim, heads, m, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self.out_dim = hidden_dim

    def forward(self, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        """Message passing among the present modalities' nodes, then a mean readout.

        Args:
            inputs: modality name -> :class:`EncoderOutput` (only ``pooled`` is used).
            present: modality name -> (B,) bool presence mask.

        Shape:
            - inputs[m].pooled: (B, D_m)
            - present[m]: (B,)
            - output.fused: (B, H)
            - output.weights: (B, M), sorted-modality order
        """
        check_fusion_inputs(self, inputs, present)
        pres = presence_matrix(self, present)  # (B, M)
        h = torch.stack(
            [self.proj[n](zero_absent(inputs[n].pooled, present[n])) for n in self.names], dim=1
        )  # (B, M, H)
        h = torch.where(pres[..., None], h, torch.zeros_like(h))
        alpha = h.new_zeros(())
        for layer in self.layers:
            h, alpha = layer(h, pres)  # (B, M, H), (B, heads, M, M)
        flags = pres.to(h.dtype)[..., None]  # (B, M, 1)
        received = (alpha.mean(dim=1) * flags).sum(dim=1)  # (B, M): over present receivers
        weights = received / flags.sum(dim=1).clamp_min(1.0)  # (B, M)
        fused = (self.norm(h) * flags).sum(dim=1) / flags.sum(dim=1).clamp_min(1.0)  # (B, H)
        return FusionOutput(fused=fused, weights=weights)


@FUSIONS.register(
    "graph", "Modalities as graph nodes; GAT message passing with a learned adjacency bias."
)
def build_graph(
    in_dims: dict[str, int],
    num_outputs: int,
    hidden_dim: int = 64,
    heads: int = 4,
    layers: int = 2,
    dropout: float = 0.0,
) -> GraphFusion:
    """Build :class:`GraphFusion` (feature level; fused is (B, hidden_dim))."""
    return GraphFusion(in_dims, num_outputs, hidden_dim, heads, layers, dropout)


__all__ = ["GraphAttentionLayer", "GraphFusion", "build_graph"]
