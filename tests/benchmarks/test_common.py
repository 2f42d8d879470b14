"""The benchmark record format shared by every script in benchmarks/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _common import (
    RECORD_KEYS,
    merge_records,
    previous_records,
    record,
    seed_record,
    write_results,
)


def test_record_has_the_shared_keys_and_extras() -> None:
    r = record("b", "mosi", "early", "accuracy", 0.75, std=0.01, n_seeds=3, seconds=2.0, x=1)
    assert set(RECORD_KEYS) <= set(r)
    assert (r["value"], r["std"], r["n_seeds"], r["x"]) == (0.75, 0.01, 3, 1)


def test_seed_record_is_the_mean_and_std_over_seeds() -> None:
    r = seed_record("b", "d", "m", "accuracy", [0.5, 0.7, 0.9], seconds=2.0, fusion="late")
    assert r["value"] == pytest.approx(0.7) and r["std"] == pytest.approx(0.2)
    assert (r["n_seeds"], r["seconds"], r["fusion"]) == (3, 2.0, "late")
    one = seed_record("b", "d", "m", "accuracy", [0.5])
    assert (one["value"], one["std"], one["n_seeds"]) == (0.5, None, 1)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "i2t_r@1", "t2i_r@10", "queries_per_s"])
def test_shared_metric_names_are_accepted(metric: str) -> None:
    assert record("b", "d", "m", metric, 1.0)["metric"] == metric


@pytest.mark.parametrize("metric", ["Accuracy", "r@", "macro-f1", "i2t_r@x"])
def test_other_metric_names_are_rejected(metric: str) -> None:
    with pytest.raises(ValueError, match="lowercase snake_case"):
        record("b", "d", "m", metric, 1.0)


def test_write_results_writes_json_records_and_a_markdown_table(tmp_path: Path) -> None:
    recs = [record("b", "mosi", "early", "accuracy", 0.5, seconds=1.0)]
    js, md = write_results("b", recs, title="T", command="python b.py", results_dir=tmp_path)
    assert json.loads(js.read_text()) == recs
    text = md.read_text()
    assert "# T" in text and "| mosi | early | accuracy |" in text and "python b.py" in text


def test_merge_records_keeps_only_what_was_not_rerun(tmp_path: Path) -> None:
    old = [
        record("b", "mosi", "early", "accuracy", 0.7),
        record("b", "har", "early", "accuracy", 0.8),
    ]
    write_results("b", old, results_dir=tmp_path)
    new = [record("b", "mosi", "early", "accuracy", 0.75)]
    merged = merge_records(previous_records("b", tmp_path), new)
    assert [(r["dataset"], r["value"]) for r in merged] == [("har", 0.8), ("mosi", 0.75)]
    assert previous_records("missing", tmp_path) == []
    by_metric = merge_records(
        old, [record("b", "mosi", "early", "macro_f1", 0.6)], ("dataset", "method", "metric")
    )
    assert len(by_metric) == 3


def test_commit_stamp_says_dirty_for_uncommitted_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    import _common

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(_common, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "benchmarks" / "results")

    def stamp() -> str:
        _common.commit.cache_clear()
        return str(_common.commit())

    sha = stamp()
    assert len(sha) >= 7 and not sha.endswith("-dirty")
    (tmp_path / "benchmarks" / "results" / "x.json").write_text("[]")  # results: still clean
    assert stamp() == sha
    (tmp_path / "benchmarks" / "new.py").write_text("")  # an uncommitted benchmark script
    assert stamp() == f"{sha}-dirty"
    (tmp_path / "benchmarks" / "new.py").unlink()
    (tmp_path / "src" / "a.py").write_text("x = 2\n")  # a changed library file
    assert stamp() == f"{sha}-dirty"
    _common.commit.cache_clear()


def test_write_results_can_show_a_subset_in_the_markdown(tmp_path: Path) -> None:
    rows = [record("b", "d", "m", "accuracy", 0.5), record("b", "d", "m", "macro_f1", 0.25)]
    json_path, md_path = write_results("b", rows, results_dir=tmp_path, table_records=rows[:1])
    assert len(json.loads(json_path.read_text())) == 2  # every record in the JSON
    md = md_path.read_text()
    assert "| accuracy |" in md and "macro_f1" not in md
