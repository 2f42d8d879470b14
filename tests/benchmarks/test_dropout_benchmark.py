"""benchmarks/dropout.py end to end on one round: records in the shared format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import dropout as bench


def test_writes_ratio_and_kept_fractions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "SHAPES", ((8, 50, 30),))
    assert bench.main(["--p", "0.25", "--rounds", "2", "--results-dir", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "dropout.json").read_text())
    by = {(r["method"], r["metric"]): r for r in records}
    assert set(by) == {
        ("f_dropout", "seconds_per_step"),
        ("dropout", "seconds_per_step"),
        ("dropout_vs_f_dropout", "ratio"),
        ("f_dropout", "kept_fraction"),
        ("dropout", "kept_fraction"),
    }
    assert by[("dropout_vs_f_dropout", "ratio")]["n_seeds"] == 2
    for method in ("f_dropout", "dropout"):  # 12,000 draws at p = 0.25: std 0.004
        assert abs(by[(method, "kept_fraction")]["value"] - 0.75) < 0.03
    assert all(r["shape"] == "8x50x30" and r["p"] == 0.25 for r in records)
    assert (tmp_path / "dropout.md").exists()
