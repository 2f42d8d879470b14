"""Relative/effective robustness against hand-worked numbers, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from polymodal.cli.main import main
from polymodal.robustness import (
    effective_robustness,
    minmax_normalize,
    parse_levels,
    relative_robustness,
)

pytestmark = pytest.mark.usefixtures("data_root")


# --------------------------------------------------------------------------- formulas


def test_relative_robustness_hand_worked() -> None:
    # Trapezoids: 0.5 * (1.0 + 0.8) / 2 + 0.5 * (0.8 + 0.4) / 2 = 0.45 + 0.30, over a span of 1.
    assert relative_robustness([0.0, 0.5, 1.0], [1.0, 0.8, 0.4]) == pytest.approx(0.75)
    # Uneven levels over a span of 0.4: (0.1 * 1.7 / 2 + 0.3 * 1.2 / 2) / 0.4 = 0.6625.
    assert relative_robustness([0.0, 0.1, 0.4], [0.9, 0.8, 0.4]) == pytest.approx(0.6625)
    assert relative_robustness([0.3], [0.7]) == pytest.approx(0.7)


def test_effective_robustness_hand_worked() -> None:
    # Reference shifted to the clean 1.0: [1.0, 0.9, 0.6]; differences [0, -0.1, -0.2];
    # trapezoid mean 0.5 * -0.05 + 0.5 * -0.15 = -0.1.
    levels = [0.0, 0.5, 1.0]
    assert effective_robustness(levels, [1.0, 0.8, 0.4], [0.9, 0.8, 0.5]) == pytest.approx(-0.1)
    # A curve parallel to the reference has no effective robustness, whatever its offset.
    assert effective_robustness(levels, [0.7, 0.6, 0.2], [0.9, 0.8, 0.4]) == pytest.approx(0.0)
    # A flat curve against a falling one: differences [0, 0.1, 0.5] -> 0.025 + 0.15.
    assert effective_robustness(levels, [0.9, 0.9, 0.9], [0.9, 0.8, 0.4]) == pytest.approx(0.175)


def test_minmax_normalize() -> None:
    assert minmax_normalize({"a": 0.5, "b": 0.7, "c": 0.6}) == pytest.approx(
        {"a": 0.0, "b": 1.0, "c": 0.5}
    )


def test_levels() -> None:
    assert parse_levels("0:0.9:0.1") == pytest.approx([i / 10 for i in range(10)])
    assert parse_levels("0,0.5,1") == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"'levels' parameter must be 'start:stop:step'"):
        parse_levels("0:1")
    with pytest.raises(ValueError, match=r"strictly increasing list of severities in \[0, 1\]"):
        parse_levels("0,1.5")
    with pytest.raises(ValueError, match=r"'values' parameter must have one value per level"):
        relative_robustness([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match=r"'reference' parameter must have one value per level"):
        effective_robustness([0.0, 1.0], [1.0, 0.5], [1.0])


# --------------------------------------------------------------------------- end to end


def _config(tmp: Path, name: str, fusion: dict[str, object], epochs: int) -> Path:
    encoder = {"name": "ts_cnn", "params": {"dim": 8, "channels": 8, "num_layers": 1}}
    cfg = {
        "seed": 0,
        "data": {
            "dataset": "har_phone_watch",
            "options": {"modalities": ["phone", "watch"]},
            "train_split": "train",
            "test_split": "test",
            "val_fraction": 0.2,
            "batch_size": 128,
        },
        "model": {"encoders": {"phone": encoder, "watch": encoder}, "fusion": fusion},
        "optim": {"lr": 1e-2, "epochs": epochs},
        "device": "cpu",
        "patience": None,
        "progress": False,
        "output_dir": str(tmp / name),
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("robustness")
    early = _config(tmp, "early", {"name": "early", "params": {"hidden_dim": 8}}, 1)
    late = _config(tmp, "late", {"name": "late", "params": {}}, 1)
    assert main(["train", str(early)]) == 0
    assert main(["train", str(late)]) == 0
    return tmp / "early", tmp / "late"


def test_evaluate_drop(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    early, _ = runs
    capsys.readouterr()

    def loss(*extra: str) -> float:
        # The loss moves with any change of the outputs (a one-epoch model's accuracy may not).
        assert main(["evaluate", str(early), "--device", "cpu", *extra]) == 0
        out = capsys.readouterr().out
        assert ("without" in out) == bool(extra)
        return float(next(x for x in out.splitlines() if x.startswith("loss")).split()[1])

    full = loss()
    no_watch = loss("--drop", "watch")
    neither = loss("--drop", "phone", "--drop", "watch")
    assert len({full, no_watch, neither}) == 3
    assert main(["evaluate", str(early), "--drop", "camera"]) == 2
    assert "--drop must name modalities the model uses (phone, watch)" in capsys.readouterr().err


def test_evaluate_an_ensemble(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs on one split are one ensemble: the mean of their class probabilities."""
    from polymodal.inference import load_trained, predict

    early, late = runs
    capsys.readouterr()
    assert main(["evaluate", str(early), str(late), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2 runs" in out
    loss = float(next(x for x in out.splitlines() if x.startswith("loss")).split()[1])
    # the same by hand: average the two models' probabilities on the test windows
    probs, target = [], None
    for run in runs:
        trained = load_trained(run)
        from polymodal.cli.train import run_split

        pred = predict(trained.model, run_split(trained, "test"), "cpu", 256)
        probs.append(pred.outputs.softmax(-1))
        target = pred.targets
    mean = (probs[0] + probs[1]) / 2
    assert target is not None
    expected = torch.nn.functional.nll_loss(mean.log(), target.long())
    assert loss == pytest.approx(float(expected), abs=1e-4)
    assert main(["evaluate", str(early), str(early), "--probe"]) == 2
    assert "--probe takes one run" in capsys.readouterr().err


def test_ensemble_refuses_runs_of_other_data(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    early, late = runs

    def copy_with(name: str, **changes: object) -> Path:
        dst = tmp_path / name
        shutil.copytree(late, dst)
        for path in dst.rglob("config.yaml"):  # the run's and each checkpoint's copy
            cfg = yaml.safe_load(path.read_text())
            for key, value in changes.items():
                section, _, field = key.partition(".")
                if field:
                    cfg[section][field] = value
                else:
                    cfg[section] = value
            path.write_text(yaml.safe_dump(cfg))
        return dst

    capsys.readouterr()
    other = copy_with("other_data", **{"data.val_fraction": 0.3})
    assert main(["evaluate", str(early), str(other)]) == 2
    assert "has another data than" in capsys.readouterr().err
    seed1 = copy_with("seed1", seed=1)
    assert main(["evaluate", str(early), str(seed1), "--split", "val"]) == 2
    assert "with their own seeds (0, 1)" in capsys.readouterr().err
    assert main(["evaluate", str(early), str(seed1)]) == 0  # the test split is shared
    # runs of other seeds trained with one data.split_seed share their validation split
    shared = copy_with("seed1_split0", seed=1, **{"data.split_seed": 0})
    assert main(["evaluate", str(early), str(shared), "--split", "val"]) == 0
    assert "ensemble of 2 runs" in capsys.readouterr().out
    other_carve = copy_with("seed0_split1", **{"data.split_seed": 1})
    assert main(["evaluate", str(early), str(other_carve), "--split", "val"]) == 2
    assert "with their own seeds (0, 1)" in capsys.readouterr().err
    assert main(["evaluate", str(early), str(other_carve)]) == 0  # test: the carve is moot


def test_robustness_cli(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    early, late = runs
    out = early.parent / "report"
    argv = ["robustness", str(early), str(late), "--reference", "late", "--device", "cpu"]
    argv += ["--levels", "0:1:0.5", "--seeds", "2", "-o", str(out)]
    argv += ["--perturbations", "gaussian_noise", "missing", "--modalities", "watch"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "accuracy by severity" in printed and "gaussian_noise" in printed
    report = json.loads((out / "robustness.json").read_text())
    assert (out / "robustness.png").stat().st_size > 0
    records = report["records"]
    keys = {"run", "modality", "perturbation", "severity", "metric", "value", "std", "n_seeds"}
    assert all(set(r) == keys for r in records)
    # 2 runs x 1 modality x 2 perturbations x 3 levels x 2 metrics.
    assert len(records) == 2 * 2 * 3 * 2
    assert {r["modality"] for r in records} == {"watch"}
    acc = {
        (r["run"], r["perturbation"], r["severity"]): r["value"]
        for r in records
        if r["metric"] == "accuracy"
    }
    # Severity 0 is the clean accuracy of every perturbation; missing at 1 is deterministic.
    assert acc[("early", "missing", 0.0)] == acc[("early", "gaussian_noise", 0.0)]
    missing_std = [
        r["std"] for r in records if r["perturbation"] == "missing" and r["severity"] == 1
    ]
    assert missing_std == [0.0] * len(missing_std)
    summary = {(s["run"], s["perturbation"]): s for s in report["summary"]}
    for (run, name), s in summary.items():
        levels = [acc[(run, name, v)] for v in (0.0, 0.5, 1.0)]
        assert s["relative_robustness"] == pytest.approx(relative_robustness([0, 0.5, 1], levels))
    assert summary[("late", "missing")]["effective_robustness"] == pytest.approx(0.0)


def test_robustness_cli_errors(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    early, _ = runs
    base = ["robustness", str(early), "-o", str(early.parent / "bad"), "--levels", "0,1"]
    assert main([*base, "--perturbations", "blur"]) == 2
    assert "names ['blur'], which apply to none of the chosen modalities" in capsys.readouterr().err
    assert main([*base, "--perturbations", "nois"]) == 2
    assert "Unknown perturbation 'nois'" in capsys.readouterr().err
    assert main([*base, "--modalities", "camera"]) == 2
    assert "Unknown modality 'camera'. Valid modalitys: phone, watch." in capsys.readouterr().err
    assert main([*base, "--reference", "late"]) == 2
    assert "--reference must be one of the runs given" in capsys.readouterr().err


def test_evaluate_drop_on_a_context_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``evaluate --drop`` also takes a ``task: context`` run: HAR's recordings as sequences
    of windows (``videos()``), each window classified in the context of its recording."""
    path = _config(tmp_path, "ctx", {"name": "early", "params": {"hidden_dim": 8}}, 1)
    cfg = yaml.safe_load(path.read_text())
    cfg.update(task="context", context={"hidden_dim": 4})
    cfg["data"]["batch_size"] = 16  # recordings per step
    cfg["optim"]["max_steps"] = 3
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    capsys.readouterr()

    def loss(*extra: str) -> float:
        assert main(["evaluate", str(tmp_path / "ctx"), "--device", "cpu", *extra]) == 0
        out = capsys.readouterr().out
        assert ("without watch" in out) == bool(extra)
        return float(next(x for x in out.splitlines() if x.startswith("loss")).split()[1])

    assert loss() != loss("--drop", "watch")
    # the validation windows are read per recording, as the trainer read them
    assert main(["evaluate", str(tmp_path / "ctx"), "--split", "val"]) == 0
    out = capsys.readouterr().out
    f1 = float(next(x for x in out.splitlines() if x.startswith("macro_f1")).split()[1])
    best = json.loads((tmp_path / "ctx" / "results.json").read_text())["val"]["macro_f1"]
    assert f1 == pytest.approx(best, abs=1e-4)
    assert main(["evaluate", str(tmp_path / "ctx"), "--drop", "camera"]) == 2
    assert "--drop must name modalities the model uses (phone, watch)" in capsys.readouterr().err
