"""Behaviour and numbers of the fusion zoo: tensor, lowrank, attention, gmu, mult,
coattention, bottleneck, graph.

The contract suite (tests/contract/test_fusion_contract.py) already checks shapes,
gradients, finiteness, determinism and state dicts for every registered fusion; here each
strategy is checked against its defining formula or invariance.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import Tensor

from polymodal.encoders.base import masked_mean
from polymodal.fusion import FUSIONS, build_fusion
from polymodal.fusion.attention import AttentionFusion
from polymodal.fusion.base import masked_softmax
from polymodal.fusion.gated import GatedMultimodalUnit
from polymodal.fusion.graph import GraphAttentionLayer, GraphFusion
from polymodal.fusion.tensor import LowRankFusion, TensorFusion
from polymodal.fusion.transformer import BottleneckFusion, CoAttentionFusion, MulTFusion
from polymodal.outputs import EncoderOutput

IN_DIMS = {"video": 6, "audio": 4, "text": 5}  # insertion order differs from sorted order
NAMES = sorted(IN_DIMS)  # ["audio", "text", "video"]
LENGTHS = {"audio": 7, "text": 4, "video": 5}  # unaligned
ZOO = ["attention", "bottleneck", "coattention", "gmu", "graph", "lowrank", "mult", "tensor"]
SEQUENCE_FUSIONS = ["bottleneck", "coattention", "mult"]
SMALL = {  # small sizes for the sequence fusions
    "mult": {"hidden_dim": 8, "num_heads": 2, "num_layers": 2},
    "coattention": {"hidden_dim": 8, "num_heads": 2, "num_layers": 2},
    "bottleneck": {"hidden_dim": 8, "num_heads": 2, "num_layers": 2, "num_bottlenecks": 2},
}

# Rows: all present / audio absent / only text / nothing.
PRESENT = {
    "audio": torch.tensor([True, False, False, False]),
    "text": torch.tensor([True, True, True, False]),
    "video": torch.tensor([True, True, False, False]),
}


def make_inputs(
    b: int = 4,
    seed: int = 0,
    dims: dict[str, int] | None = None,
    lengths: dict[str, int] | None = None,
    pad: int = 0,
) -> dict[str, EncoderOutput]:
    """Padded sequences with 1..L valid steps per row; ``pad`` extra padded steps of noise.

    Masks are True at valid steps whatever the presence, so absent rows look like data: the
    fusions must ignore them through ``present`` alone.
    """
    g = torch.Generator().manual_seed(seed)
    g_pad = torch.Generator().manual_seed(seed + 1000)  # padding never shifts the data's draws
    out = {}
    for name, d in (dims or IN_DIMS).items():
        length = (lengths or LENGTHS).get(name, 3)
        lens = (torch.arange(b) * 2 + 1) % length + 1  # (B,) in 1..L
        mask = torch.arange(length)[None, :] < lens[:, None]  # (B, L)
        seq = torch.randn(b, length, d, generator=g) * mask[..., None]  # (B, L, D)
        pooled = masked_mean(seq, mask)
        if pad:
            noise = torch.randn(b, pad, d, generator=g_pad) * 10
            seq = torch.cat([seq, noise], dim=1)
            mask = torch.cat([mask, torch.zeros(b, pad, dtype=torch.bool)], dim=1)
        out[name] = EncoderOutput(seq, mask, pooled)
    return out


def replace_rows(
    inputs: dict[str, EncoderOutput], name: str, rows: Tensor, value: float | None = None
) -> dict[str, EncoderOutput]:
    """``inputs`` with the sequence and pooled rows of ``name`` overwritten (noise or value)."""
    enc = inputs[name]
    seq, pooled = enc.sequence.clone(), enc.pooled.clone()
    if value is None:
        g = torch.Generator().manual_seed(123)
        seq[rows] = torch.randn(seq[rows].shape, generator=g) * 30
        pooled[rows] = torch.randn(pooled[rows].shape, generator=g) * 30
    else:
        seq[rows] = value
        pooled[rows] = value
    return {**inputs, name: EncoderOutput(seq, enc.mask, pooled)}


def ones(b: int, names: list[str]) -> dict[str, Tensor]:
    return {n: torch.ones(b, dtype=torch.bool) for n in names}


def build(name: str, dims: dict[str, int] | None = None, /, **hyper: Any) -> Any:
    kwargs = {**SMALL.get(name, {}), **hyper}
    return build_fusion(name, dict(dims or IN_DIMS), **kwargs).eval()


# --------------------------------------------------------------------------- all zoo members


def test_zoo_is_registered_with_descriptions() -> None:
    assert set(ZOO) <= set(FUSIONS.names())
    for name in ZOO:
        assert FUSIONS.get(name).description


@pytest.mark.parametrize("name", ZOO)
def test_absent_values_never_leak_even_nan_or_with_valid_masks(name: str) -> None:
    fusion = build(name)
    inputs = make_inputs()
    with torch.no_grad():
        ref = fusion(inputs, PRESENT)
        for m in NAMES:
            absent = ~PRESENT[m]
            for value in (None, float("nan"), float("inf")):
                out = fusion(replace_rows(inputs, m, absent, value), PRESENT)
                torch.testing.assert_close(out.features, ref.features)
                if ref.weights is not None:
                    torch.testing.assert_close(out.weights, ref.weights)
        # the values of a present modality do matter
        changed = replace_rows(inputs, "text", torch.tensor([True, False, False, False]))
        assert not torch.allclose(fusion(changed, PRESENT).features[0], ref.features[0])


@pytest.mark.parametrize("name", ZOO)
def test_nothing_present_gives_finite_output(name: str) -> None:
    fusion = build(name)
    out = fusion(make_inputs(b=2), {n: torch.zeros(2, dtype=torch.bool) for n in NAMES})
    assert torch.isfinite(out.features).all()
    if out.weights is not None:
        assert torch.equal(out.weights, torch.zeros(2, 3))


VARIANTS = [
    ("tensor", {"proj_dim": 3, "num_layers": 2, "activation": "relu", "dropout": 0.2}),
    ("lowrank", {"rank": 1, "dropout": 0.2}),
    ("attention", {"hidden_dim": 6, "attention_dim": 3, "dropout": 0.2}),
    ("gmu", {"hidden_dim": 6, "dropout": 0.2}),
    ("graph", {"hidden_dim": 8, "num_heads": 2, "num_layers": 1, "dropout": 0.2}),
    ("graph", {"hidden_dim": 8, "num_heads": 2, "nodes": "time", "dropout": 0.2}),
    ("mult", {"num_layers": 1, "dropout": 0.2}),
    ("coattention", {"num_layers": 1, "dropout": 0.2}),
    ("bottleneck", {"num_layers": 3, "fusion_layer": 2, "num_bottlenecks": 1, "dropout": 0.2}),
]


@pytest.mark.parametrize(
    ("name", "hyper"), VARIANTS, ids=[f"{v[0]}-{i}" for i, v in enumerate(VARIANTS)]
)
def test_non_default_settings_train_with_missing_modalities(
    name: str, hyper: dict[str, object]
) -> None:
    fusion = build(name, **hyper).train()
    out = fusion(make_inputs(), PRESENT)
    assert out.features.shape == (4, fusion.out_dim)
    assert torch.isfinite(out.features).all()
    out.features.sum().backward()
    missing = [n for n, p in fusion.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["mult", "coattention", "bottleneck", "graph", "attention"])
def test_hyper_parameter_errors_name_the_parameter(name: str) -> None:
    with pytest.raises(ValueError, match="'hidden_dim' must be an int >= 1, got 0"):
        build(name, hidden_dim=0)
    with pytest.raises(ValueError, match=r"'dropout' must be a float in \[0, 1\), got 1.0"):
        build(name, dropout=1.0)
    if name != "attention":
        with pytest.raises(ValueError, match="'num_heads' must be an int >= 1, got 0"):
            build(name, num_heads=0)
        with pytest.raises(ValueError, match="'num_layers' must be an int >= 1, got 0"):
            build(name, num_layers=0)
        with pytest.raises(ValueError, match="'hidden_dim' must be divisible by 'num_heads'"):
            build(name, hidden_dim=6, num_heads=4)


# --------------------------------------------------------------------------- tensor / lowrank


def _identity_tfn(dims: dict[str, int], proj_dim: int) -> Any:
    fusion = build("tensor", dims, proj_dim=proj_dim, hidden_dim=4)
    with torch.no_grad():
        for n in fusion.names:
            fusion.proj[n].weight.copy_(torch.eye(proj_dim, dims[n]))
            fusion.proj[n].bias.zero_()
    return fusion


def test_tfn_equals_hand_built_outer_product_for_two_modalities() -> None:
    dims = {"text": 3, "audio": 3}
    fusion = _identity_tfn(dims, 3)
    inputs = make_inputs(b=2, dims=dims)
    present = ones(2, ["audio", "text"])
    z = fusion.tensor_product(inputs, present)
    assert z.shape == (2, 16) and fusion.product_dim == 16
    for row in range(2):
        a = torch.cat([inputs["audio"].pooled[row], torch.ones(1)])  # sorted: audio first
        t = torch.cat([inputs["text"].pooled[row], torch.ones(1)])
        expected = torch.outer(a, t).flatten()
        torch.testing.assert_close(z[row], expected)
        # the product holds the unimodal terms and the constant 1
        torch.testing.assert_close(expected.view(4, 4)[:3, 3], inputs["audio"].pooled[row])
        torch.testing.assert_close(expected.view(4, 4)[3, :3], inputs["text"].pooled[row])
    torch.testing.assert_close(fusion(inputs, present).features, fusion.post(z))


def test_tfn_absent_modality_keeps_exactly_the_other_modalities_terms() -> None:
    fusion = build("tensor", proj_dim=2, hidden_dim=4)
    assert isinstance(fusion, TensorFusion)
    inputs = make_inputs(b=4)
    z = fusion.tensor_product(inputs, PRESENT).view(4, 3, 3, 3)  # (B, audio, text, video)
    with torch.no_grad():
        h = {n: torch.cat([fusion.proj[n](inputs[n].pooled), torch.ones(4, 1)], 1) for n in NAMES}
    full = torch.einsum("ba,bt,bv->batv", h["audio"], h["text"], h["video"])
    torch.testing.assert_close(z[0], full[0])
    # row 1, audio absent: only the audio-index-is-1 slice survives, holding text ⊗ video
    assert torch.equal(z[1, :2], torch.zeros(2, 3, 3))
    torch.testing.assert_close(z[1, 2], torch.outer(h["text"][1], h["video"][1]))
    # row 2, only text: [0;1] ⊗ [t;1] ⊗ [0;1]
    assert z[2].count_nonzero() <= 3
    torch.testing.assert_close(z[2, 2, :, 2], h["text"][2])
    # row 3, nothing: the single constant 1
    expected = torch.zeros(3, 3, 3)
    expected[2, 2, 2] = 1.0
    assert torch.equal(z[3], expected)


def test_tfn_refuses_a_huge_product() -> None:
    dims = {f"m{i}": 2 for i in range(7)}
    with pytest.raises(ValueError, match=r"proj_dim=8 has .* = 4782969 features.*'lowrank'"):
        build_fusion("tensor", dims)


def test_lmf_equals_the_explicit_low_rank_tensor_formula() -> None:
    dims = {"video": 2, "audio": 3, "text": 2}
    fusion = build("lowrank", dims, rank=3, hidden_dim=4)
    assert isinstance(fusion, LowRankFusion)
    with torch.no_grad():
        fusion.bias.normal_()
    inputs = make_inputs(b=3, dims=dims)
    present = {**ones(3, sorted(dims)), "video": torch.tensor([True, False, True])}
    out = fusion(inputs, present).features
    f = fusion.factors
    # W = sum_r lambda_r  W_audio^(r) ⊗ W_text^(r) ⊗ W_video^(r), with the output axis shared
    w = torch.einsum("r,rah,rth,rvh->atvh", fusion.rank_weights, f["audio"], f["text"], f["video"])
    assert w.shape == (4, 3, 3, 4)
    for row in range(3):
        x = {
            n: torch.cat([inputs[n].pooled[row] * present[n][row], torch.ones(1)])
            for n in sorted(dims)
        }
        z = torch.einsum("a,t,v->atv", x["audio"], x["text"], x["video"])  # TFN's product
        expected = torch.einsum("atv,atvh->h", z, w) + fusion.bias
        torch.testing.assert_close(out[row], expected, atol=1e-5, rtol=1e-4)


def test_lmf_rank_one_is_a_product_of_affine_maps() -> None:
    dims = {"audio": 2, "text": 3}
    fusion = build("lowrank", dims, rank=1, hidden_dim=5)
    inputs = make_inputs(b=2, dims=dims)
    out = fusion(inputs, ones(2, ["audio", "text"])).features
    a = torch.cat([inputs["audio"].pooled, torch.ones(2, 1)], 1) @ fusion.factors["audio"][0]
    t = torch.cat([inputs["text"].pooled, torch.ones(2, 1)], 1) @ fusion.factors["text"][0]
    torch.testing.assert_close(out, fusion.rank_weights[0] * a * t + fusion.bias)


# --------------------------------------------------------------------------- attention


def test_attention_weights_are_a_softmax_over_present_modalities() -> None:
    fusion = build("attention", hidden_dim=8, attention_dim=4)
    assert isinstance(fusion, AttentionFusion)
    inputs = make_inputs()
    out = fusion(inputs, PRESENT)
    assert out.weights is not None
    flags = torch.stack([PRESENT[n] for n in NAMES], 1)
    torch.testing.assert_close(out.weights.sum(1), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert (out.weights[~flags] == 0).all() and (out.weights[flags] > 0).all()
    assert torch.equal(out.weights[2], torch.tensor([0.0, 1.0, 0.0]))  # only text
    # by hand: scores of the present embeddings, softmax, weighted sum
    e = torch.stack([fusion.proj[n](inputs[n].pooled) for n in NAMES], 1)  # (B, M, H)
    s = fusion.score(e).squeeze(-1)  # (B, M)
    torch.testing.assert_close(out.weights[0], torch.softmax(s[0], 0))
    torch.testing.assert_close(out.weights[1, 1:], torch.softmax(s[1, 1:], 0))
    torch.testing.assert_close(out.features[0], (out.weights[0, :, None] * e[0]).sum(0))
    torch.testing.assert_close(out.features[2], e[2, 1])
    assert torch.equal(out.features[3], torch.zeros(8))


def test_attention_weights_depend_on_content() -> None:
    fusion = build("attention", hidden_dim=8)
    a, b = make_inputs(seed=0), make_inputs(seed=1)
    present = ones(4, NAMES)
    wa, wb = fusion(a, present).weights, fusion(b, present).weights
    assert wa is not None and wb is not None and not torch.allclose(wa, wb)


def test_masked_softmax_rows_without_valid_entries_are_zero_with_finite_grads() -> None:
    scores = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, True], [False] * 4, [False, True, False, False]])
    w = masked_softmax(scores, mask, dim=1)
    torch.testing.assert_close(w.sum(1), torch.tensor([1.0, 0.0, 1.0]))
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(w[0, mask[0]], torch.softmax(scores[0, mask[0]], 0))
    (w * torch.randn(3, 4)).sum().backward()
    assert scores.grad is not None and torch.isfinite(scores.grad).all()


# --------------------------------------------------------------------------- gmu


def test_gmu_gates_are_in_open_unit_interval_and_sum_to_one_over_present() -> None:
    fusion = build("gmu", hidden_dim=6)
    assert isinstance(fusion, GatedMultimodalUnit)
    inputs = make_inputs()
    h, z = fusion.gates(inputs, PRESENT)  # (B, M, H)
    flags = torch.stack([PRESENT[n] for n in NAMES], 1)  # (B, M)
    # rows 0, 1 have several present modalities: gates strictly inside (0, 1)
    for row in (0, 1):
        g = z[row][flags[row]]
        assert ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(z.sum(1), flags.any(1, keepdim=True).float().expand(4, 6))
    assert (z[~flags] == 0).all()
    assert torch.equal(z[2, 1], torch.ones(6))  # a lone modality takes the whole gate
    out = fusion(inputs, PRESENT)
    torch.testing.assert_close(out.features, (z * h).sum(1))
    torch.testing.assert_close(out.weights, z.mean(2))
    torch.testing.assert_close(
        out.features[2], torch.tanh(fusion.candidate["text"](inputs["text"].pooled[2]))
    )


def test_gmu_with_two_modalities_is_the_papers_sigmoid_unit() -> None:
    dims = {"text": 3, "video": 4}
    fusion = build("gmu", dims, hidden_dim=5)
    inputs = make_inputs(b=3, dims=dims)
    present = ones(3, ["text", "video"])
    xt, xv = inputs["text"].pooled, inputs["video"].pooled
    g = fusion.gate(torch.cat([xt, xv, torch.ones(3, 2)], 1)).view(3, 2, 5)
    zt = torch.sigmoid(g[:, 0] - g[:, 1])  # the paper's single gate
    ht = torch.tanh(fusion.candidate["text"](xt))
    hv = torch.tanh(fusion.candidate["video"](xv))
    torch.testing.assert_close(fusion(inputs, present).features, zt * ht + (1 - zt) * hv)


# --------------------------------------------------------------------------- MulT


def test_mult_is_invariant_to_padding_length() -> None:
    fusion = build("mult")
    assert isinstance(fusion, MulTFusion) and fusion.out_dim == 3 * 2 * 8
    with torch.no_grad():
        ref = fusion(make_inputs(), PRESENT).features
        padded = fusion(make_inputs(pad=6), PRESENT).features
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=1e-4)


def test_mult_absent_target_gives_zeros_and_absent_source_is_ignored() -> None:
    fusion = build("mult")
    inputs = make_inputs()
    with torch.no_grad():
        out = fusion(inputs, PRESENT).features.view(4, 3, 16)  # (B, target, 2 hidden_dim)
    assert torch.equal(out[1, 0], torch.zeros(16))  # audio absent in row 1
    assert torch.equal(out[2, 0], torch.zeros(16)) and torch.equal(out[2, 2], torch.zeros(16))
    assert torch.equal(out[3], torch.zeros(3, 16))
    assert out[0].abs().min(dim=1).values.gt(0).all()
    # a target whose sources are all absent keeps a representation of itself (the blocks'
    # residual paths), so a model still sees text when audio and video are dropped
    assert out[2, 1].abs().gt(0).all()
    # text in row 2 is alone: both of its cross-modal chunks come from absent sources, so
    # changing what the absent sources hold changes nothing
    noisy = replace_rows(
        replace_rows(inputs, "audio", ~PRESENT["audio"]), "video", ~PRESENT["video"]
    )
    with torch.no_grad():
        again = fusion(noisy, PRESENT).features.view(4, 3, 16)
    torch.testing.assert_close(again, out)


def test_mult_handles_mosi_length_unaligned_sequences() -> None:
    dims = {"text": 8, "audio": 4, "video": 6}
    fusion = build("mult", dims, hidden_dim=8, num_heads=2, num_layers=1)
    inputs = make_inputs(b=2, dims=dims, lengths={"text": 50, "audio": 375, "video": 500})
    with torch.no_grad():
        out = fusion(inputs, ones(2, sorted(dims))).features
    assert out.shape == (2, 48) and torch.isfinite(out).all()


def test_mult_needs_two_modalities() -> None:
    with pytest.raises(ValueError, match="needs at least two"):
        build("mult", {"text": 4})


def test_sequence_shape_errors_name_the_modality() -> None:
    fusion = build("mult")
    inputs = make_inputs()
    bad = dict(inputs)
    enc = inputs["audio"]
    bad["audio"] = EncoderOutput(enc.sequence[..., :3], enc.mask, enc.pooled)
    with pytest.raises(ValueError, match=r"modality 'audio' sequence must have shape \(4, L, 4\)"):
        fusion(bad, PRESENT)
    bad["audio"] = EncoderOutput(enc.sequence, enc.mask[:, :2], enc.pooled)
    with pytest.raises(ValueError, match=r"modality 'audio' mask must be a \(4, 7\) bool"):
        fusion(bad, PRESENT)


# --------------------------------------------------------------------------- co-attention


def _sub_fusion(fusion: torch.nn.Module, name: str, drop: str, **hyper: object) -> torch.nn.Module:
    """The same fusion built without modality ``drop``, sharing the other parameters."""
    dims = {n: d for n, d in IN_DIMS.items() if n != drop}
    sub = build(name, dims, **hyper)
    state = {k: v for k, v in fusion.state_dict().items() if f".{drop}." not in k}
    if name == "graph":  # the adjacency keeps the rows and columns of the other nodes
        keep = [NAMES.index(n) for n in sorted(dims)]
        for k in state:
            if k.endswith("adjacency"):
                state[k] = state[k][:, keep][:, :, keep]
    sub.load_state_dict(state)
    return sub


GRAPH = {"hidden_dim": 8, "num_heads": 2}
WITHOUT_CASES = [
    ("coattention", {}),
    ("bottleneck", {}),
    ("graph", GRAPH),
    ("graph", {**GRAPH, "nodes": "time"}),
]


@pytest.mark.parametrize(
    ("name", "hyper"), WITHOUT_CASES, ids=["coattention", "bottleneck", "graph", "graph-time"]
)
@pytest.mark.parametrize("drop", NAMES)
def test_absent_modality_equals_the_fusion_built_without_it(
    name: str, hyper: dict[str, object], drop: str
) -> None:
    fusion = build(name, **hyper)
    inputs = make_inputs(b=3, seed=2)
    present = {**ones(3, NAMES), drop: torch.tensor([False, True, False])}
    sub = _sub_fusion(fusion, name, drop, **hyper)
    keep = [n for n in NAMES if n != drop]
    with torch.no_grad():
        full = fusion(inputs, present)
        reduced = sub({n: inputs[n] for n in keep}, ones(3, keep))
    rows = torch.tensor([0, 2])
    if name == "graph":  # one fused vector (mean over present modalities)
        torch.testing.assert_close(
            full.features[rows], reduced.features[rows], atol=1e-5, rtol=1e-4
        )
        assert full.weights is not None and reduced.weights is not None
        torch.testing.assert_close(
            full.weights[rows][:, [NAMES.index(n) for n in keep]], reduced.weights[rows]
        )
    else:  # one pooled chunk per modality (then, for bottleneck, the bottleneck's mean)
        d = 8
        chunks = full.features[:, : 3 * d].view(3, 3, d)
        assert torch.equal(chunks[rows, NAMES.index(drop)], torch.zeros(2, d))
        others = chunks[:, [NAMES.index(n) for n in keep]].reshape(3, 2 * d)
        kept = torch.cat([others, full.features[:, 3 * d :]], dim=1)
        assert kept.shape == reduced.features.shape
        torch.testing.assert_close(kept[rows], reduced.features[rows], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(kept[1], reduced.features[1])  # where present it counts


def test_coattention_layer_by_hand() -> None:
    fusion = build("coattention", num_layers=1)
    assert fusion.out_dim == 24
    inputs = make_inputs(b=2)
    present = ones(2, NAMES)
    x = {n: fusion.embed(n, inputs[n].sequence) for n in NAMES}
    m = {n: inputs[n].mask for n in NAMES}
    pooled = []
    for n in NAMES:
        others = [s for s in NAMES if s != n]
        ctx = torch.cat([x[s] for s in others], 1)
        ctx_mask = torch.cat([m[s] for s in others], 1)
        h = fusion.co_blocks[0][n](x[n], ctx, ctx_mask)
        h = fusion.self_blocks[0][n](h, m[n])
        pooled.append(masked_mean(fusion.norm[n](h), m[n]))
    torch.testing.assert_close(fusion(inputs, present).features, torch.cat(pooled, 1))


def test_coattention_is_invariant_to_padding_length() -> None:
    fusion = build("coattention")
    assert isinstance(fusion, CoAttentionFusion)
    with torch.no_grad():
        ref = fusion(make_inputs(), PRESENT).features
        padded = fusion(make_inputs(pad=5), PRESENT).features
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- bottleneck


def _probe(output: Tensor) -> Tensor:
    """A fixed random weighting of ``output``, summed: a scalar whose gradient a final
    LayerNorm does not cancel (the plain sum of a normalised vector is constant, so its
    gradient is rounding noise: ~1e-9, or exactly 0 on some CPUs)."""
    w = torch.randn(output.shape, generator=torch.Generator().manual_seed(7))
    return (output * w).sum()


def _grad_of(output: Tensor, source: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(_probe(output), source, retain_graph=True, allow_unused=True)
    return torch.zeros_like(source) if grad is None else grad


def test_bottleneck_is_the_only_path_between_modalities() -> None:
    """Layers before fusion_layer are unimodal; the bottleneck carries information across."""
    inputs = make_inputs(b=2)
    present = ones(2, NAMES)
    audio = inputs["audio"].sequence.clone().requires_grad_(True)
    inputs = {**inputs, "audio": EncoderOutput(audio, inputs["audio"].mask, inputs["audio"].pooled)}
    d = 8
    # fusion in both layers: the layer-0 average reaches the text stream in layer 1
    fusion = build("bottleneck", num_layers=2, fusion_layer=0)
    assert isinstance(fusion, BottleneckFusion) and fusion.out_dim == 4 * d
    out = fusion(inputs, present).features
    assert _grad_of(out[:, d : 2 * d], audio).abs().sum() > 0  # text chunk sees audio
    # fusion in the last layer only: text stays unimodal, the bottleneck mixes both
    late = build("bottleneck", num_layers=2, fusion_layer=1)
    out = late(inputs, present).features
    assert torch.equal(_grad_of(out[:, d : 2 * d], audio), torch.zeros_like(audio))
    assert _grad_of(out[:, 3 * d :], audio).abs().sum() > 0


def test_bottleneck_is_independent_of_absent_values_and_padding() -> None:
    fusion = build("bottleneck")
    inputs = make_inputs()
    with torch.no_grad():
        ref = fusion(inputs, PRESENT).features
        padded = fusion(make_inputs(pad=4), PRESENT).features
        noisy = fusion(replace_rows(inputs, "video", ~PRESENT["video"]), PRESENT).features
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(noisy, ref)


def test_bottleneck_fusion_layer_must_leave_a_fusion_layer() -> None:
    with pytest.raises(ValueError, match=r"'fusion_layer' must be below 'num_layers' \(2\)"):
        build("bottleneck", fusion_layer=2)


# --------------------------------------------------------------------------- graph


def test_graph_message_passing_is_equivariant_to_node_order() -> None:
    torch.manual_seed(1)
    layer = GraphAttentionLayer(8, 2, num_types=3).eval()
    with torch.no_grad():
        layer.adjacency.normal_()
    h = torch.randn(3, 5, 8)
    types = torch.tensor([0, 2, 1, 2, 0])  # e.g. time-step nodes of three modalities
    mask = torch.tensor([[True] * 5, [True, False, True, True, True], [False] * 5])
    with torch.no_grad():
        out, alpha = layer(h, mask, types)
        for perm in itertools.islice(itertools.permutations(range(5)), 1, None, 17):
            p = torch.tensor(perm)
            out_p, alpha_p = layer(h[:, p], mask[:, p], types[p])
            torch.testing.assert_close(out_p, out[:, p], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(alpha_p, alpha[:, :, p][:, :, :, p], atol=1e-6, rtol=1e-5)
    assert torch.equal(out[1, 1], torch.zeros(8)) and torch.equal(out[2], torch.zeros(5, 8))
    torch.testing.assert_close(alpha.sum(-1)[:2], torch.ones(2, 2, 5))
    assert (alpha[1, :, :, 1] == 0).all()  # an invalid node sends nothing


def test_graph_fusion_output_does_not_depend_on_modality_names_order() -> None:
    """Renaming modalities so that their sorted order changes permutes nothing that matters."""
    torch.manual_seed(0)
    fusion = build("graph", hidden_dim=8, num_heads=2)
    with torch.no_grad():
        for layer in fusion.layers:
            layer.adjacency.normal_()
    rename = {"audio": "z_audio", "text": "text", "video": "a_video"}  # new sorted order
    renamed = build("graph", {rename[n]: d for n, d in IN_DIMS.items()}, hidden_dim=8, num_heads=2)
    perm = [NAMES.index(n) for n in sorted(rename, key=lambda n: rename[n])]
    state = {}
    for k, v in fusion.state_dict().items():
        for old, new in rename.items():
            k = k.replace(f"proj.{old}.", f"proj.{new}.")
        state[k] = v[:, perm][:, :, perm] if k.endswith("adjacency") else v
    renamed.load_state_dict(state)
    inputs = make_inputs()
    with torch.no_grad():
        ref = fusion(inputs, PRESENT)
        out = renamed(
            {rename[n]: e for n, e in inputs.items()}, {rename[n]: p for n, p in PRESENT.items()}
        )
    torch.testing.assert_close(out.features, ref.features, atol=1e-5, rtol=1e-4)
    assert out.weights is not None and ref.weights is not None
    torch.testing.assert_close(out.weights, ref.weights[:, perm], atol=1e-6, rtol=1e-5)


def test_graph_edge_weights_follow_the_gat_formula() -> None:
    layer = GraphAttentionLayer(4, 1, num_types=2)
    with torch.no_grad():
        layer.adjacency.normal_()
    h = torch.randn(2, 3, 4)
    mask = torch.ones(2, 3, dtype=torch.bool)
    types = torch.tensor([1, 0, 1])
    values, alpha = layer.attention(h, mask, types)
    v = layer.value(h)  # (B, N, D), one head
    scores = (v @ layer.att_dst[0])[:, :, None] + (v @ layer.att_src[0])[:, None, :]
    bias = layer.adjacency[0][types][:, types]  # (N, N)
    e = torch.nn.functional.leaky_relu(scores, 0.2) + bias
    torch.testing.assert_close(alpha[:, 0], torch.softmax(e, -1))
    torch.testing.assert_close(values[:, 0], v)


def test_graph_time_nodes_are_invariant_to_padding_length() -> None:
    fusion = build("graph", hidden_dim=8, num_heads=2, nodes="time")
    with torch.no_grad():
        ref = fusion(make_inputs(), PRESENT)
        padded = fusion(make_inputs(pad=3), PRESENT)
    torch.testing.assert_close(padded.features, ref.features, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(padded.weights, ref.weights, atol=1e-6, rtol=1e-5)


def test_graph_rejects_an_unknown_node_kind() -> None:
    with pytest.raises(ValueError, match=r"Unknown graph node kind 'times'.*Did you mean 'time'"):
        build("graph", nodes="times")


@pytest.mark.parametrize("nodes", ["modality", "time"])
def test_graph_readout_weights_sum_to_one_over_present(nodes: str) -> None:
    fusion = build("graph", hidden_dim=8, num_heads=2, nodes=nodes)
    assert isinstance(fusion, GraphFusion) and fusion.out_dim == 8
    out = fusion(make_inputs(), PRESENT)
    assert out.weights is not None
    torch.testing.assert_close(out.weights.sum(1), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    flags = torch.stack([PRESENT[n] for n in NAMES], 1)
    assert (out.weights[~flags] == 0).all()
    assert torch.equal(out.features[3], torch.zeros(8))


# --------------------------------------------------------------------------- sizes


EXPECTED_COUNTS = {
    "attention": 27136,
    "bottleneck": 81312,
    "coattention": 157728,
    "gmu": 75264,
    "graph": 60168,
    "lowrank": 37700,
    "mult": 458208,
    "tensor": 94616,
}


def test_default_parameter_counts_for_reference_dims() -> None:
    """Pinned so that a change of defaults is deliberate (dims text 64, audio 32, video 48)."""
    dims = {"text": 64, "audio": 32, "video": 48}
    counts = {n: sum(p.numel() for p in build_fusion(n, dims).parameters()) for n in ZOO}
    assert counts == EXPECTED_COUNTS


# --------------------------------------------------------------------------- missing tokens


@pytest.mark.parametrize("name", SEQUENCE_FUSIONS)
def test_missing_tokens_stand_in_only_where_a_modality_is_absent(name: str) -> None:
    torch.manual_seed(0)
    fusion = build(name, missing_token=True)
    inputs = make_inputs()
    with torch.no_grad():
        ref = fusion(inputs, PRESENT)
        # absent values still never leak (even NaN): the token replaces them
        for m in NAMES:
            out = fusion(replace_rows(inputs, m, ~PRESENT[m], float("nan")), PRESENT)
            torch.testing.assert_close(out.features, ref.features)
        # audio's token changes only the rows where audio is absent (rows 1-3); a random
        # move, as a LayerNorm after the token would cancel a constant shift
        token = fusion.embed.missing["audio"]
        token += torch.randn(token.shape, generator=torch.Generator().manual_seed(1))
        moved = fusion(inputs, PRESENT)
    torch.testing.assert_close(moved.features[0], ref.features[0])
    assert all(not torch.allclose(moved.features[r], ref.features[r]) for r in (1, 2, 3))
    # an absent modality is pooled from its token, not zero as without tokens
    assert torch.isfinite(ref.features).all() and ref.features[3].abs().sum() > 0


@pytest.mark.parametrize("name", SEQUENCE_FUSIONS)
def test_missing_tokens_learn_and_leave_the_default_unchanged(name: str) -> None:
    plain = build(name)
    tokens = build(name, missing_token=True)
    missing = tokens.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == [f"embed.missing.{n}" for n in NAMES]
    inputs = make_inputs()
    everyone = ones(4, NAMES)
    with torch.no_grad():  # all present: the tokens are never valid, outputs identical
        torch.testing.assert_close(
            tokens(inputs, everyone).features, plain(inputs, everyone).features
        )
    assert not any("missing" in n for n, _ in plain.named_parameters())
    tokens.train()
    _probe(tokens(inputs, PRESENT).features).backward()
    grads = {n: tokens.embed.missing[n].grad for n in NAMES}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    with pytest.raises(TypeError, match="'missing_token' must be true or false"):
        build(name, missing_token="yes")
