"""benchmarks/scale.py measures the three readers on the same examples and writes records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import scale
from tests.conftest import require


def test_scale_records_each_reader_and_the_ratios(tmp_path: Path) -> None:
    require("webdataset")
    argv = ["--datasets", "av_digits", "--limit", "6", "--batch-size", "4", "--shard-size", "4"]
    argv += ["--repeats", "2", "--standin-workers", "0", "--results-dir", str(tmp_path)]
    assert scale.main(argv) == 0
    records = json.loads((tmp_path / "scale.json").read_text())
    rates = {r["method"]: r for r in records if r["metric"] == "samples_per_s"}
    assert sorted(rates) == sorted(scale.READERS)
    assert all(
        r["n_examples"] == 6 and r["value"] > 0 and r["n_seeds"] == 2 for r in rates.values()
    )
    ratios = {r["method"]: r["value"] for r in records if r["metric"] == "shards_vs_loader"}
    assert sorted(ratios) == [f"{r}/loader" for r in scale.READERS[1:]]
    assert all(v > 0 for v in ratios.values())
    assert "shards_vs_loader" in (tmp_path / "scale.md").read_text()
