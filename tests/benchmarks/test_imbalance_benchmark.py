"""``benchmarks/imbalance.py``: the target's verdicts on hand-worked records."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

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
