"""``MultiHeadAttention``: fused projections, checked against multi-head attention by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from polymodal.layers import MultiHeadAttention

D, H = 8, 2


def _by_hand(query: Tensor, kv: Tensor, w: dict[str, Tensor], mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(Dh)) v per head, with separate q/k/v projections."""
    b, lq, _ = query.shape
    dh = D // H

    def heads(x: Tensor) -> Tensor:
        return x.view(b, x.shape[1], H, dh).transpose(1, 2)  # (B, H, L, Dh)

    q = heads(query @ w["q_proj.weight"].T + w["q_proj.bias"])
    k = heads(kv @ w["k_proj.weight"].T + w["k_proj.bias"])
    v = heads(kv @ w["v_proj.weight"].T + w["v_proj.bias"])
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (B, H, L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, lq, D)
    return out @ w["out_proj.weight"].T + w["out_proj.bias"]


def _separate_weights(kv_dim: int, seed: int = 0) -> dict[str, Tensor]:
    """A state dict in the layout before the fused projections (q_proj, k_proj, v_proj)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"q_proj": (D, D), "k_proj": (D, kv_dim), "v_proj": (D, kv_dim), "out_proj": (D, D)}
    out = {}
    for name, shape in shapes.items():
        out[f"{name}.weight"] = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[f"{name}.bias"] = torch.randn(shape[0], generator=g)
    return out


@pytest.mark.parametrize("kv_dim", [D, 5])
def test_old_checkpoints_load_and_match_attention_by_hand(kv_dim: int) -> None:
    attn = MultiHeadAttention(D, H, kv_dim=kv_dim).eval()
    weights = _separate_weights(kv_dim)
    attn.load_state_dict(dict(weights))  # strict: every old key is used, none is missing
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(3, 4, D, generator=g), torch.randn(3, 6, kv_dim, generator=g)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        got = attn(x, ctx, key_padding_mask=mask)
        torch.testing.assert_close(got, _by_hand(x, ctx, weights, mask))
        if kv_dim == D:  # self-attention: the one fused product
            torch.testing.assert_close(attn(x), _by_hand(x, x, weights, None))


def test_fused_layout_holds_one_weight_when_widths_match() -> None:
    same, other = MultiHeadAttention(D, H), MultiHeadAttention(D, H, kv_dim=5)
    assert set(same.state_dict()) == {"in_proj.weight", "in_proj.bias", "out_proj.weight", "out_proj.bias"}  # fmt: skip
    assert same.in_proj is not None and same.in_proj.weight.shape == (3 * D, D)
    assert set(other.state_dict()) == {
        "q_proj.weight",
        "q_proj.bias",
        "kv_proj.weight",
        "kv_proj.bias",
        "out_proj.weight",
        "out_proj.bias",
    }
    # the new layout round-trips
    copy = MultiHeadAttention(D, H)
    copy.load_state_dict(same.state_dict())
    x = torch.randn(2, 3, D)
    torch.testing.assert_close(copy(x), same(x))


def test_old_checkpoint_without_biases_loads() -> None:
    attn = MultiHeadAttention(D, H, bias=False)
    weights = {k: v for k, v in _separate_weights(D).items() if k.endswith("weight")}
    attn.load_state_dict(weights)
    assert attn.in_proj is not None
    torch.testing.assert_close(attn.in_proj.weight[D : 2 * D], weights["k_proj.weight"])


# ------------------------------------------------------------------ attend: padded heads


def test_cpu_head_dim_pads_narrow_heads_to_16() -> None:
    from polymodal.layers.transformer import cpu_head_dim

    sizes = (1, 4, 5, 10, 15, 16, 20, 30, 64)
    assert [cpu_head_dim(d) for d in sizes] == [16, 16, 16, 16, 16, 16, 20, 30, 64]


@pytest.mark.parametrize("dh", [1, 5, 10])
def test_attend_pads_heads_and_matches_sdpa_with_gradients(dh: int) -> None:
    """Zero features appended to q, k, v change neither the attention nor its gradients."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from polymodal.layers.transformer import attend, cpu_head_dim

    assert cpu_head_dim(dh) != dh  # the padded path is the one under test
    g = torch.Generator().manual_seed(dh)
    q, k, v = (torch.randn(3, 2, n, dh, generator=g, requires_grad=True) for n in (7, 9, 9))
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 5:] = False  # padded keys
    w = torch.randn(3, 2, 7, dh, generator=g)
    out = attend(q, k, v, mask)
    grads = torch.autograd.grad((out * w).sum(), (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):  # the reference: plain attention, unpadded
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref_grads = torch.autograd.grad((ref * w).sum(), (q, k, v))
    assert out.shape == ref.shape == (3, 2, 7, dh)
    assert torch.allclose(out, ref, atol=1e-5)
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_attend_keeps_the_plain_call_with_attention_dropout() -> None:
    """Dropout sends CPU attention to its unfused path, where padding does not pay."""
    import torch.nn.functional as F

    from polymodal.layers.transformer import attend

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 5, generator=g) for _ in range(3))
    torch.manual_seed(3)
    out = attend(q, k, v, None, dropout_p=0.5)
    torch.manual_seed(3)
    ref = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert torch.equal(out, ref)


def test_all_valid_mask_is_dropped_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """An all-valid key mask gives the unmasked call (the same attention, faster kernel)."""
    import polymodal.layers.transformer as transformer

    seen: list[Tensor | None] = []
    sdpa = transformer.F.scaled_dot_product_attention

    def spy(*args: Tensor, attn_mask: Tensor | None = None, **kwargs: object) -> Tensor:
        seen.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H).eval()
    x, ctx = torch.randn(2, 3, D), torch.randn(2, 5, D)
    all_valid = torch.ones(2, 5, dtype=torch.bool)
    some = all_valid.clone()
    some[0, 3:] = False
    unmasked = mha(x, ctx)
    assert torch.equal(mha(x, ctx, key_padding_mask=all_valid), unmasked)
    masked = mha(x, ctx, key_padding_mask=some)
    assert seen[0] is None and seen[1] is None and seen[2] is not None
    assert not torch.allclose(masked[0], unmasked[0]) and torch.equal(masked[1], unmasked[1])


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_attention_keeps_the_mask_it_was_traced_with() -> None:
    """A trace taken with an all-valid mask still masks the keys of later inputs."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H).eval()
    x, ctx = torch.randn(2, 3, D), torch.randn(2, 5, D)
    all_valid = torch.ones(2, 5, dtype=torch.bool)
    traced = torch.jit.trace(mha, (x, ctx, all_valid))
    some = all_valid.clone()
    some[0, 3:] = False
    torch.testing.assert_close(traced(x, ctx, some), mha(x, ctx, key_padding_mask=some))
