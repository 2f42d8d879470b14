"""``attn_dropout`` of the sequence fusions: dropout on the attention weights, apart from the
residual ``dropout``, default 0 (so training keeps SDPA's fused kernels)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polymodal.layers.transformer import (
    CrossAttentionBlock,
    MultiHeadAttention,
    TransformerBlock,
    TransformerEncoder,
)
from tests.fusion.test_fusion_zoo import PRESENT, build, make_inputs

SEQUENCE_FUSIONS = ["mult", "coattention", "bottleneck"]


def _rates(module: nn.Module) -> tuple[set[float], set[float]]:
    """(attention-weight dropout rates, residual nn.Dropout rates) inside ``module``."""
    attn = {float(m.dropout) for m in module.modules() if isinstance(m, MultiHeadAttention)}
    resid = {float(m.p) for m in module.modules() if isinstance(m, nn.Dropout)}
    return attn, resid


@pytest.mark.parametrize("name", SEQUENCE_FUSIONS)
def test_attention_dropout_is_apart_from_residual_dropout(name: str) -> None:
    assert _rates(build(name, dropout=0.2)) == ({0.0}, {0.2})  # default: none on attention
    assert _rates(build(name, dropout=0.2, attn_dropout=0.1)) == ({0.1}, {0.2})
    assert _rates(build(name, attn_dropout=0.3)) == ({0.3}, {0.0})
    with pytest.raises(ValueError, match=r"'attn_dropout' must be a float in \[0, 1\), got 1.0"):
        build(name, attn_dropout=1.0)


@pytest.mark.parametrize("name", SEQUENCE_FUSIONS)
def test_attention_dropout_only_acts_in_training(name: str) -> None:
    """With only attention dropout, two training passes differ and eval passes agree; with
    none at all, training passes agree too (nothing else draws)."""
    inputs = make_inputs()
    fusion = build(name, attn_dropout=0.5).train()
    torch.manual_seed(0)
    a = fusion(inputs, PRESENT).features
    b = fusion(inputs, PRESENT).features
    assert not torch.allclose(a, b)
    fusion.eval()
    torch.testing.assert_close(fusion(inputs, PRESENT).features, fusion(inputs, PRESENT).features)
    plain = build(name).train()
    torch.testing.assert_close(plain(inputs, PRESENT).features, plain(inputs, PRESENT).features)


def test_layers_pass_attention_dropout_to_the_attention_only() -> None:
    block = TransformerBlock(8, 2, dropout=0.3, attn_dropout=0.1)
    assert block.attn.dropout == 0.1 and block.drop.p == 0.3
    cross = CrossAttentionBlock(8, 2, context_dim=4, dropout=0.3)
    assert cross.attn.dropout == 0.0 and cross.drop.p == 0.3
    enc = TransformerEncoder(8, 2, 2, dropout=0.2, attn_dropout=0.05)
    assert _rates(enc) == ({0.05}, {0.2})
