"""``monitor_without``: validation also run with each listed modality absent, and the best
epoch chosen by the monitor's mean over those presence conditions
(:mod:`polymodal.training.missing`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polymodal.data.sample import Batch, ModalityBatch
from polymodal.inference import evaluate, evaluate_videos, load_trained
from polymodal.models.build import build_model
from polymodal.robustness import drop_modalities
from polymodal.training import Trainer, load_config
from polymodal.training.config import mean_over_missing
from polymodal.training.context import ContextStrategy
from polymodal.training.missing import check_monitor_without, with_missing
from polymodal.training.supervised import SupervisedStrategy
from tests.models.test_context import ToyVideos, context_model
from tests.training.test_context_task import toy_config
from tests.training.test_loop import MODEL_CFG, SCHEMA, Toy, _cfg


def _batch() -> Batch:
    a = ModalityBatch(torch.ones(3, 2), torch.ones(3, dtype=torch.bool))
    b = ModalityBatch(torch.ones(3, 1), torch.ones(3, dtype=torch.bool))
    return Batch({"a": a, "b": b}, torch.zeros(3, dtype=torch.long), ["x", "y", "z"])


def test_with_missing_adds_each_condition_and_their_mean() -> None:
    """A fake evaluation scores a batch by which modalities it still has: the metrics of each
    condition land under ``_without_<m>``, and the monitor's mean over the 3 conditions."""
    scores = {("a", "b"): 0.9, ("b",): 0.6, ("a",): 0.3}

    def fake(transform):  # type: ignore[no-untyped-def]
        batch = _batch() if transform is None else transform(_batch())
        left = tuple(m for m in ("a", "b") if bool(batch[m].present.all()))
        return {"accuracy": scores[left], "loss": 1.0 - scores[left]}

    out = with_missing(fake, "accuracy", ["a", "b"])
    assert out["accuracy"] == 0.9 and out["loss"] == pytest.approx(0.1)
    assert out["accuracy_without_a"] == 0.6 and out["loss_without_a"] == pytest.approx(0.4)
    assert out["accuracy_without_b"] == 0.3
    assert out[mean_over_missing("accuracy")] == pytest.approx(0.6)
    assert mean_over_missing("accuracy") == "accuracy_mean_over_missing"
    # one modality listed: the mean of 2 conditions; none listed: the plain metrics
    assert with_missing(fake, "accuracy", ["b"])["accuracy_mean_over_missing"] == 0.6
    assert with_missing(fake, "accuracy", []) == {"accuracy": 0.9, "loss": pytest.approx(0.1)}


def test_check_monitor_without_names_the_problem() -> None:
    check_monitor_without(["a", "b"], ["a", "b"])
    check_monitor_without([], ["a"])
    with pytest.raises(
        ValueError,
        match=r"monitor_without names 'c', which is not a modality of this model; choose from \['a', 'b'\]",
    ):
        check_monitor_without(["c"], ["a", "b"])
    with pytest.raises(ValueError, match="lists a modality twice"):
        check_monitor_without(["a", "a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least two modalities"):
        check_monitor_without(["a"], ["a"])


def test_config_selection_metric(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert cfg.monitor_without == () and cfg.selection_metric == "accuracy"
    cfg = cfg.replace(monitor_without=["b"], monitor="macro_f1")
    assert cfg.monitor_without == ("b",) and cfg.selection_metric == "macro_f1_mean_over_missing"
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path, ["monitor_without=[a, b]"]).monitor_without == ("a", "b")


def test_supervised_run_selects_on_the_mean_over_missing(tmp_path: Path) -> None:
    """The best epoch is the one with the highest mean over the conditions (not the highest
    plain monitor), the kept weights reproduce its scores, and results.json has the test
    split's ``_without_`` metrics too."""
    train, val, test = Toy(96, 0), Toy(48, 1, "val"), Toy(48, 2, "test")
    model = build_model(MODEL_CFG, SCHEMA, seed=0)
    cfg = _cfg(tmp_path, monitor_without=("a", "b"), patience=None).replace(**{"optim.epochs": 6})
    res = Trainer(cfg, SupervisedStrategy(cfg, model, train, val, test)).fit()
    key = "val_accuracy_mean_over_missing"
    history = [row[key] for row in res.history]
    for row in res.history:
        mean = (
            row["val_accuracy"] + row["val_accuracy_without_a"] + row["val_accuracy_without_b"]
        ) / 3
        assert row[key] == pytest.approx(mean)
    assert res.best_val is not None and res.best_val["accuracy_mean_over_missing"] == max(history)
    assert history[res.best_epoch - 1] == max(history)
    without_b = evaluate(model, val, transform=lambda b: drop_modalities(b, ["b"]))
    assert res.best_val["accuracy_without_b"] == pytest.approx(without_b["accuracy"])
    assert res.test is not None and "accuracy_without_a" in res.test
    summary = json.loads((res.run_dir / "results.json").read_text())
    assert summary["test"]["accuracy_without_b"] == pytest.approx(res.test["accuracy_without_b"])
    # the run folder's config keeps the setting
    assert load_trained(res.run_dir).config["monitor_without"] == ["a", "b"]


def test_context_run_selects_on_the_mean_over_missing(tmp_path: Path) -> None:
    from polymodal.data.context import VideoDataset

    train, val = VideoDataset(ToyVideos()).split_videos(0.34, seed=0)
    model = context_model("gru")
    cfg = toy_config(tmp_path, monitor_without=["b"], monitor="macro_f1")
    res = Trainer(cfg, ContextStrategy(cfg, model, train, val, val)).fit()
    assert res.best_val is not None
    dropped = evaluate_videos(model, val, transform=lambda b: drop_modalities(b, ["b"]))
    assert res.best_val["macro_f1_without_b"] == pytest.approx(dropped["macro_f1"])
    mean = (res.best_val["macro_f1"] + dropped["macro_f1"]) / 2
    assert res.best_val["macro_f1_mean_over_missing"] == pytest.approx(mean)
    with pytest.raises(ValueError, match=r"monitor_without names 'c'"):
        ContextStrategy(toy_config(tmp_path, monitor_without=["c"]), model, train, val, val)


def test_monitor_without_needs_a_strategy_that_can_drop(tmp_path: Path) -> None:
    class NoDrop(SupervisedStrategy):
        drops_modalities = False

    cfg = _cfg(tmp_path, monitor_without=("a",))
    train, val, _ = Toy(32, 0), Toy(16, 1, "val"), None
    strategy = NoDrop(cfg, build_model(MODEL_CFG, SCHEMA, seed=0), train, val)
    with pytest.raises(ValueError, match=r"monitor_without=\['a'\] is for supervised and context"):
        Trainer(cfg, strategy)
    with pytest.raises(ValueError, match=r"monitor_without names 'z'"):
        SupervisedStrategy(_cfg(tmp_path, monitor_without=("z",)), strategy.model, train, val)


def test_the_loop_selects_and_stops_on_the_selection_metric(tmp_path: Path) -> None:
    """Scripted validation scores where the plain monitor and its mean over missing
    modalities disagree: the kept epoch and early stopping follow the mean."""
    means = [0.5, 0.7, 0.6, 0.65]  # best at epoch 2; patience 2 stops after epoch 4
    plain = [0.9, 0.8, 0.95, 0.99]  # the plain monitor would keep epoch 4 and not stop

    class Scripted(SupervisedStrategy):
        epoch = 0

        def evaluate(self, split: str) -> dict[str, float] | None:
            if split == "test":
                return {"accuracy": 0.5}
            self.epoch += 1
            i = self.epoch - 1
            return {"accuracy": plain[i], "accuracy_mean_over_missing": means[i], "loss": 1.0}

    cfg = _cfg(tmp_path, monitor_without=("a",), patience=2).replace(**{"optim.epochs": 6})
    train, val = Toy(32, 0), Toy(16, 1, "val")
    res = Trainer(cfg, Scripted(cfg, build_model(MODEL_CFG, SCHEMA, seed=0), train, val)).fit()
    assert res.best_epoch == 2 and res.epochs_run == 4
    assert res.best_val == {"accuracy": 0.8, "accuracy_mean_over_missing": 0.7, "loss": 1.0}
