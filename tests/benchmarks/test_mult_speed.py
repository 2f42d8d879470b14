"""The polymodal side of benchmarks/mult_speed.py: model, batch, FLOP counting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from mult_speed import (
    CPU_SDPA_FLOPS,
    MulTSetup,
    _repeat_ratios,
    build_polymodal_mult,
    count_flops,
    main,
    polymodal_batch,
    polymodal_model_flops,
    synthetic_batch,
)

TINY = MulTSetup(batch_size=2, lengths=(3, 5, 4), dims=(7, 5, 6), d_model=4, heads=2, layers=2)


def _mult_params(setup: MulTSetup) -> int:
    """MulT's parameter count from its structure (what the benchmark claims to build)."""
    d, n = setup.d_model, setup.layers
    linear = lambda i, o: i * o + o  # noqa: E731
    norm = lambda w: 2 * w  # noqa: E731
    embed = sum(linear(dim, d) for dim in setup.dims)
    # cross-modal block: LN(q), LN(kv), q/k/v/out maps, LN, MLP d -> 4d -> d
    cross = 3 * norm(d) + 4 * linear(d, d) + linear(d, 4 * d) + linear(4 * d, d)
    # self-attention block on the 2 concatenated streams (width 2d), plus a final LN
    w = 2 * d
    block = 2 * norm(w) + 4 * linear(w, w) + linear(w, 4 * w) + linear(4 * w, w)
    memory = n * block + norm(w)
    fused = 3 * 2 * d
    head = 2 * linear(fused, fused) + linear(fused, 1)
    return embed + 6 * n * cross + 3 * memory + head


def test_model_builds_with_mmsa_hyper_parameters_and_predicts_one_value() -> None:
    model = build_polymodal_mult(TINY)
    fusion = model.fusion
    assert fusion.out_dim == 3 * 2 * TINY.d_model  # MMSA's combined_dim = 2 (d_l + d_a + d_v)
    assert sum(p.numel() for p in model.parameters()) == _mult_params(TINY)
    batch = polymodal_batch(*synthetic_batch(TINY))
    assert tuple(batch["audio"].values.shape) == (2, 5, 5)
    out = model(batch)
    assert tuple(out.logits.shape) == (2,)
    F.l1_loss(out.logits, batch.target).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_synthetic_batch_is_seeded() -> None:
    a, ta = synthetic_batch(TINY)
    b, tb = synthetic_batch(TINY)
    assert torch.equal(a["video"], b["video"]) and torch.equal(ta, tb)
    assert float(ta.abs().max()) <= 3.0


def test_fused_attention_counts_as_the_matmuls_of_unfused_attention() -> None:
    b, h, lq, s, dh = 2, 2, 3, 4, 5
    q, kv = (b, h, lq, dh), (b, h, s, dh)
    one_matmul = 2 * b * h * lq * s * dh  # QK^T, or A V
    forward = CPU_SDPA_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu]
    backward = CPU_SDPA_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward]
    assert forward(q, kv, kv) == 2 * one_matmul
    assert backward((b, h, lq, dh), q, kv, kv) == 4 * one_matmul  # no recomputation


@pytest.mark.slow  # FlopCounterMode imports torch._dynamo on first use: several seconds
def test_count_flops_of_a_matmul_and_of_fused_attention() -> None:
    x, w = torch.randn(3, 4), torch.randn(4, 5)
    assert count_flops(lambda: x @ w) == 2 * 3 * 4 * 5
    b, h, lq, s, dh = 2, 2, 3, 4, 5
    q = torch.randn(b, h, lq, dh, requires_grad=True)
    k = torch.randn(b, h, s, dh, requires_grad=True)
    v = torch.randn(b, h, s, dh, requires_grad=True)

    def attention() -> None:
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    assert count_flops(attention) == 6 * 2 * b * h * lq * s * dh  # 2 + 4 matmuls


@pytest.mark.slow  # FlopCounterMode, as above
def test_model_flops_count_attention_at_the_head_size_not_the_cpu_padding() -> None:
    from polymodal.layers.transformer import attend

    b, h, lq, s, dh = 2, 2, 3, 4, 5  # attend pads these heads to 16 on CPU
    q = torch.randn(b, h, lq, dh, requires_grad=True)
    k = torch.randn(b, h, s, dh, requires_grad=True)
    v = torch.randn(b, h, s, dh, requires_grad=True)

    def attention() -> None:
        attend(q, k, v).sum().backward()

    assert count_flops(attention) == 6 * 2 * b * h * lq * s * 16  # what the kernel runs
    assert polymodal_model_flops(attention) == 6 * 2 * b * h * lq * s * dh  # the model's
    assert count_flops(attention) == 6 * 2 * b * h * lq * s * 16  # the padding is back


def test_ratio_is_taken_per_repeat_then_averaged() -> None:
    # repeat 1: medians 10 / 2 = 5; repeat 2: medians 6 / 3 = 2
    assert _repeat_ratios([10, 11, 9, 6, 6, 7], [2, 2, 3, 3], 2) == [5.0, 2.0]


def test_polymodal_side_runs_in_a_worker_process(tmp_path: Path) -> None:
    argv = [
        *("--batch-size", "2", "--d-model", "4", "--heads", "2", "--layers", "1"),
        *("--lengths", "3", "5", "4", "--rounds", "2", "--repeats", "1", "--steps", "1"),
        *("--commit", "test", "--results-dir", str(tmp_path)),
    ]
    assert main(argv) == 0
    records = json.loads((tmp_path / "mult_speed.json").read_text())
    by = {(r["method"], r["metric"]): r for r in records}
    sps = by[("polymodal_mult", "samples_per_s")]
    assert sps["value"] > 0 and sps["n_seeds"] == 2 and sps["repeats"] == 1
    assert by[("polymodal_mult", "params")]["value"] == _mult_params(
        MulTSetup(batch_size=2, d_model=4, heads=2, layers=1, lengths=(3, 5, 4))
    )
    assert not any(r["method"] == "mmsa_mult" for r in records)  # no --mmsa-python: skipped
    assert "MMSA side SKIPPED" in (tmp_path / "mult_speed.md").read_text()
