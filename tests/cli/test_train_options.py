"""``polymodal train DATA.csv --task``, and ``--time-limit`` (a counter for a clock)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from polymodal.cli.main import main
from polymodal.cli.train import duration
from polymodal.training import timelimit
from polymodal.training.auto import manifest_config


def _manifest(tmp_path: Path) -> Path:
    """36 rows: two numeric features, ``stars`` in 0..4 (whole numbers: read as classes),
    ``mood`` words."""
    rows = ["id,x,z,stars,mood"] + [
        f"r{i},{i / 7:.3f},{(i * 5) % 11 / 3:.3f},{i % 5},{'happy' if i % 2 else 'sad'}"
        for i in range(36)
    ]
    data = tmp_path / "shop.csv"
    data.write_text("\n".join(rows) + "\n")
    return data


def test_task_overrides_the_inferred_one(tmp_path: Path) -> None:
    data = _manifest(tmp_path)
    assert manifest_config(data, "stars").monitor == "macro_f1"  # inferred: 5 classes
    cfg = manifest_config(data, "stars", task="regression")
    assert cfg.monitor == "mae" and cfg.data.options == {
        "label_column": "stars",
        "task": "regression",
    }
    assert manifest_config(data, "mood", task="multilabel").monitor == "micro_f1"


def test_train_task_regression_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _manifest(tmp_path), tmp_path / "run"
    argv = ["train", str(data), "optim.epochs=1", f"output_dir={run}", "--device", "cpu"]
    assert main([*argv, "--label", "stars", "--task", "regression"]) == 0
    out = capsys.readouterr().out
    assert "monitor val mae" in out and "task: regression" in out
    saved = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert saved["data"]["options"]["task"] == "regression"
    assert set(json.loads((run / "results.json").read_text())["val"]) >= {"mae", "pearson_r"}


def test_task_the_column_cannot_have(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _manifest(tmp_path)
    with pytest.raises(ValueError, match=r"label column 'mood' .* 2 value\(s\) .* 'happy', 'sad'"):
        manifest_config(data, "mood", task="regression")
    assert main(["train", str(data), "--label", "mood", "--task", "regression"]) == 2
    assert "--task regression needs numbers in label column 'mood'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--task must be one of .* got 'regresion'"):
        manifest_config(data, "stars", task="regresion")
    with pytest.raises(SystemExit):
        main(["train", str(data), "--task", "ranking"])
    assert "argument --task: invalid choice: 'ranking'" in capsys.readouterr().err
    config = tmp_path / "run.yaml"
    config.write_text("task: supervised\n")
    assert main(["train", str(config), "--task", "regression"]) == 2
    assert "--label, --group and --task describe a manifest" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0), ("600", 600.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5m", "ten", "10 min", "1.5d", ""])
def test_bad_time_limit_names_the_flag(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "x.yaml", f"--time-limit={text}"])
    err = capsys.readouterr().err
    assert "argument --time-limit: expected a positive duration such as 90s, 10m, 1.5h" in err


def test_time_limit_stops_after_one_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(timelimit, "clock", itertools.count(step=100).__next__)
    data, run = _manifest(tmp_path), tmp_path / "run"
    argv = ["train", str(data), f"output_dir={run}", "--label", "stars", "--time-limit", "90s"]
    assert main([*argv, "--device", "cpu"]) == 0
    assert "best epoch 1 of 1" in capsys.readouterr().out
    state = json.loads((run / "checkpoints/last/state.json").read_text())
    assert (state["global_step"], state["time_limited"]) == (1, True)
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["time_limit"] == 90.0
    assert (run / "checkpoints/best").is_dir() and (run / "results.json").is_file()
