"""``benchmarks/imbalance.py``: the target's verdicts on hand-worked records."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import pytest

import imbalance as bench


def _rec(method: str, metric: str, value: float) -> dict[str, object]:
    return {"dataset": "d", "method": method, "metric": metric, "value": value}


def test_verdicts_compare_the_weakest_encoder_and_the_fused_cost() -> None:
    records = [
        _rec("none", "accuracy", 0.950),
        _rec("none", "probe_accuracy_audio", 0.70),  # the weakest under plain training
        _rec("none", "probe_accuracy_image", 0.90),
        _rec("gblend", "accuracy", 0.948),  # -0.2 points: within the 0.3 allowed
        _rec("gblend", "probe_accuracy_audio", 0.755),  # +5.5
        _rec("gblend", "probe_accuracy_image", 0.80),
        _rec("ogm_ge", "accuracy", 0.940),  # -1.0: too costly
        _rec("ogm_ge", "probe_accuracy_audio", 0.80),
        _rec("mla", "accuracy", 0.951),
        _rec("mla", "probe_accuracy_audio", 0.74),  # +4.0: too little
        {**_rec("none", "accuracy", 0.5), "dataset": "other"},  # another data set: ignored
    ]
    lines = bench.verdicts(records, "d")
    assert len(lines) == 3
    assert lines[0].startswith("- d, gblend: probe accuracy of the weakest encoder (audio) +5.5")
    assert "fused accuracy -0.2: meets" in lines[0]
    assert "fused accuracy -1.0: misses" in lines[1]
    assert "+4.0 points" in lines[2] and "misses" in lines[2]
    assert bench.verdicts(records[3:6], "d") == []  # no plain run: no reference


def test_each_run_is_judged_against_its_own_plain_training() -> None:
    records = [
        {**_rec("none", "accuracy", 0.95), "run": "a"},
        {**_rec("none", "probe_accuracy_audio", 0.76), "run": "a"},
        {**_rec("gblend", "accuracy", 0.95), "run": "a"},  # +4 over run a's plain: misses
        {**_rec("gblend", "probe_accuracy_audio", 0.80), "run": "a"},
        {**_rec("none", "accuracy", 0.95), "run": "b"},
        {**_rec("none", "probe_accuracy_audio", 0.70), "run": "b"},
        {**_rec("mla", "accuracy", 0.95), "run": "b"},
        {**_rec("mla", "probe_accuracy_audio", 0.76), "run": "b"},  # +6 over run b's: meets
    ]
    lines = bench.verdicts(records, "d")
    assert len(lines) == 2
    assert lines[0].startswith("- d (run a), gblend:") and "+4.0 points" in lines[0]
    assert "misses" in lines[0]
    assert lines[1].startswith("- d (run b), mla:") and "+6.0 points" in lines[1]
    assert "meets" in lines[1]
    assert bench.label("optim.balance.unimodal_weight=0.3") == "unimodal_weight=0.3"


def test_a_grid_runs_one_method_per_value_and_validation_chooses_among_them() -> None:
    grid = bench.grid_overrides("optim.balance.unimodal_weight=0.1, 0.3,1.0")
    assert grid == [
        ("optim.balance.unimodal_weight=0.1",),
        ("optim.balance.unimodal_weight=0.3",),
        ("optim.balance.unimodal_weight=1.0",),
    ]
    assert bench.grid_overrides(None) == [()]
    for bad in ("unimodal_weight", "=0.1", "optim.balance.unimodal_weight="):
        with pytest.raises(ValueError, match=r"--grid must be KEY=V1,V2"):
            bench.grid_overrides(bad)
    val = {"u w=0.1": [0.96, 0.98], "u w=0.3": [0.99, 0.96], "u w=1.0": [0.97, 0.97]}
    assert bench.choose_on_validation(val) == "u w=0.3"  # mean 0.975
    assert bench.choose_on_validation({"a": [0.9], "b": [0.9]}) == "a"  # a tie: the first
    tie = {"w=0.3": [0.3, 0.5], "w=1.0": [0.1 + 0.2, 0.5]}  # 0.1 + 0.2 > 0.3 in floats
    assert bench.choose_on_validation(tie) == "w=0.3"
    assert bench.choose_on_validation({"a": [0.90], "b": [0.91]}) == "b"


def test_the_verdict_names_a_method_chosen_on_validation() -> None:
    records = [
        _rec("none", "accuracy", 0.95),
        _rec("none", "probe_accuracy_audio", 0.70),
        {**_rec("unimodal w=0.3", "accuracy", 0.95), "chosen_on_validation": True},
        {**_rec("unimodal w=0.3", "probe_accuracy_audio", 0.76), "chosen_on_validation": True},
        _rec("unimodal w=1.0", "accuracy", 0.94),
        _rec("unimodal w=1.0", "probe_accuracy_audio", 0.78),
    ]
    lines = bench.verdicts(records, "d")
    assert lines[0].startswith("- d, unimodal w=0.3 (chosen on validation from its grid):")
    assert lines[0].endswith("meets the target (>= +5, >= -0.3)")
    assert lines[1].startswith("- d, unimodal w=1.0: probe") and "misses" in lines[1]
