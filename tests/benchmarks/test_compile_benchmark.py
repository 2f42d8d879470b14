"""benchmarks/compile.py: the first epoch's seconds, the graph count, its argument check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import compile as compile_benchmark  # benchmarks/compile.py
from tests.training.test_distributed import _config


def test_first_epoch_seconds_reads_the_runs_log(tmp_path: Path) -> None:
    rows = [{"epoch": 1, "step": 3, "seconds": 41.5}, {"epoch": 2, "step": 6, "seconds": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compile_benchmark.first_epoch_seconds(tmp_path) == 41.5


def test_graph_count_sees_the_running_statistics_break(tmp_path: Path) -> None:
    """The tiny manifest's two MLP encoders: one graph; with running statistics each
    encoder's masked row selection breaks it."""
    config = _config(tmp_path)
    assert compile_benchmark.graph_count(config, ["device=cpu"]) == 1
    stats = [f"model.encoders.{m}.params.running_stats=true" for m in ("a", "b")]
    assert compile_benchmark.graph_count(config, ["device=cpu", *stats]) > 1


def test_one_epoch_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        compile_benchmark.main(["--epochs", "1"])
    assert "--epochs must be at least 2" in capsys.readouterr().err
