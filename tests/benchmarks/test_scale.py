"""benchmarks/scale.py measures the three readers on the same examples, and training on 1 and
2 processes (torchrun), and writes records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import scale
from tests.conftest import require
from tests.training.test_distributed import _config


def test_scale_records_each_reader_and_the_ratios(tmp_path: Path) -> None:
    require("webdataset")
    argv = ["--parts", "loader", "--datasets", "av_digits", "--limit", "6", "--batch-size", "4"]
    argv += ["--shard-size", "4", "--repeats", "2", "--results-dir", str(tmp_path)]
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


def test_training_rate_skips_the_first_epoch_and_counts_a_short_last_batch(
    tmp_path: Path,
) -> None:
    rows = [
        {"epoch": 1, "step": 3, "seconds": 100.0},
        {"epoch": 2, "step": 6, "seconds": 2.0},  # 3 steps of 8: the 20 examples, last short
        {"epoch": 3, "step": 7, "seconds": 1.0},  # stopped after 1 step (optim.max_steps)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rate, seconds = scale.training_rate(tmp_path, n_train=20, batch_size=8)
    assert (rate, seconds) == (pytest.approx((20 + 8) / 3.0), 3.0)
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="--process-epochs must be at least 2"):
        scale.training_rate(tmp_path, n_train=20, batch_size=8)


def test_scale_launches_and_ratios_keep_the_loader_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part ``processes`` with each launch faked (a metrics.jsonl whose epoch seconds
    depend on the launch): records, ratios, the shards launch's overrides, and the loader
    part's records of an earlier run kept (an older version's dropped)."""
    seen: dict[tuple[int, int, bool], list[str]] = {}

    def fake_launch(
        config: Path, overrides: list[str], processes: int, threads: int, run_dir: Path
    ) -> float:
        on_shards = any(o.startswith("data.shards=") for o in overrides)
        seen[processes, threads, on_shards] = overrides
        if on_shards:  # the whole train split (48 rows), validation carved as from the source
            folder = Path(next(o for o in overrides if o.startswith("data.shards="))[12:])
            assert json.loads((folder / "train.json").read_text())["count"] == 48
        seconds = {(1, 1): 4.0, (2, 1): 2.0, (1, 2): 3.0}[processes, threads]
        seconds /= 2 if on_shards else 1
        rows = [{"step": 5, "seconds": 99.0}, {"step": 10, "seconds": seconds}]
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return 10.0 * threads / processes

    monkeypatch.setattr(scale, "launch_training", fake_launch)
    old = [
        scale.record("scale", "mosi", "loader", "samples_per_s", 1.0),
        scale.record("scale", "mosi", "shards_stream workers=2 (stand-in)", "ratio", 1.0),
        scale.record("scale", "tiny", "train nproc=1 threads=1", "samples_per_s", 1.0),
    ]
    (tmp_path / "scale.json").write_text(json.dumps(old))
    argv = ["--parts", "processes", "--train-config", str(_config(tmp_path))]
    argv += ["--process-epochs", "2", "--process-repeats", "2", "--results-dir", str(tmp_path)]
    assert scale.main(argv) == 0
    records = json.loads((tmp_path / "scale.json").read_text())
    assert records[0] == old[0]
    rates = {r["method"]: r for r in records[1:] if r["metric"] == "samples_per_s"}
    assert sorted(rates) == sorted(m for m, _, _, _ in scale.LAUNCHES.values())
    for r in rates.values():  # 36 training rows, batch 8: 5 steps, the last of 4 rows
        assert r["n_examples"] == 36 and r["n_seeds"] == 2 and r["std"] == 0
    assert rates["train nproc=1 threads=1"]["value"] == pytest.approx(36 / 4.0)
    assert rates["train nproc=2 threads=1"]["processes"] == 2
    assert rates["train nproc=1 threads=2"]["threads"] == 2
    assert rates["train nproc=1 threads=1"]["launch_s"] == 10.0
    ratios = {r["method"]: r for r in records if r["metric"] != "samples_per_s"}
    assert ratios.keys() == {
        "nproc=2 threads=1/nproc=1 threads=1",
        "nproc=2 threads=1/nproc=1 threads=2",
        "nproc=1 threads=1 shards/nproc=1 threads=1",
    }
    assert ratios["nproc=2 threads=1/nproc=1 threads=1"]["metric"] == "speedup_2_processes"
    assert ratios["nproc=2 threads=1/nproc=1 threads=1"]["value"] == pytest.approx(2.0)
    assert ratios["nproc=2 threads=1/nproc=1 threads=1"]["launch_ratio"] == 2.0
    assert ratios["nproc=2 threads=1/nproc=1 threads=2"]["value"] == pytest.approx(1.5)
    shards_ratio = ratios["nproc=1 threads=1 shards/nproc=1 threads=1"]
    assert (shards_ratio["metric"], shards_ratio["value"]) == ("shards_vs_loader", 2.0)
    on_shards = seen[1, 1, True]
    assert "data.manifest=null" in on_shards and "device=cpu" in on_shards


@pytest.mark.slow
def test_scale_trains_on_two_processes_under_torchrun(tmp_path: Path) -> None:
    """One real launch: ``polymodal train`` on 2 processes of a tiny manifest config."""
    argv = ["--parts", "processes", "--train-config", str(_config(tmp_path)), "--launches"]
    argv += ["2", "--process-epochs", "2", "--process-repeats", "1"]
    assert scale.main([*argv, "--results-dir", str(tmp_path)]) == 0
    (rate,) = json.loads((tmp_path / "scale.json").read_text())
    assert (rate["method"], rate["metric"], rate["processes"]) == (
        "train nproc=2 threads=1",
        "samples_per_s",
        2,
    )
    assert rate["value"] > 0 and rate["launch_s"] > 0 and rate["n_examples"] == 36
