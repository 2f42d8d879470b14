"""benchmarks/gpu.py on the CPU at tiny sizes: both loops train the same model, the
records are complete, and the FLOP counts match the models' structure."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from gpu import SyntheticAVDigits, flickr_pairs, main


def test_synthetic_av_digits_has_the_real_shapes_and_is_seeded() -> None:
    a, b = SyntheticAVDigits(6, 0), SyntheticAVDigits(6, 0)
    assert len(a) == 6 and a.targets() == b.targets()
    s = a[3]
    assert s.modalities["image"].shape == (3, 28, 28)  # type: ignore[union-attr]
    assert 2000 <= s.modalities["audio"].shape[0] <= 8000  # type: ignore[union-attr]
    assert torch.equal(s.modalities["audio"], b[3].modalities["audio"])  # type: ignore[arg-type]


def test_flickr_pairs_map_five_captions_to_each_image() -> None:
    p = flickr_pairs(4, 0)
    assert p.anchor_features.shape == (4, 1280) and p.other_features.shape == (20, 384)
    assert p.other_to_anchor is not None and p.other_to_anchor.tolist()[:6] == [0] * 5 + [1]


def test_quick_run_reports_both_loops_and_their_ratio() -> None:
    records = main(["--quick", "--device", "cpu", "--precision", "fp32"])
    got = {(r["dataset"], r["method"], r["metric"]): r["value"] for r in records}
    for model in ("av_digits", "flickr8k"):
        poly = got[(model, "polymodal", "samples_per_s")]
        bare = got[(model, "bare", "samples_per_s")]
        assert poly > 0 and bare > 0
        assert abs(got[(model, "polymodal", "ratio_to_bare_loop")] - poly / bare) < 1e-9
    # a CNN over 8 kHz log-mels and a 28x28 image: millions of FLOPs per example; the
    # joint model: two residual projections of 1280-d and 384-d features
    assert got[("av_digits", "model", "gflops_per_sample")] > 1e-3
    assert got[("flickr8k", "model", "gflops_per_sample")] > 1e-2
    assert {r["metric"] for r in records} >= {"samples_per_s", "mfu", "peak_memory_mb"}
