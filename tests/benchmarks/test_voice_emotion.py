"""benchmarks/voice_emotion.py: its measurement helpers and the config it trains."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import voice_emotion as bench
from polymodal.data.datasets.ravdess_speech import EMOTIONS, TEST_ACTORS


def test_confusion_matrix_counts_true_by_predicted() -> None:
    cm = bench.confusion_matrix([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]
    assert bench.per_class_accuracy(cm) == [0.5, 1.0, pytest.approx(2 / 3)]
    empty = bench.per_class_accuracy(torch.zeros(2, 2, dtype=torch.long))
    assert all(v != v for v in empty)  # nan for a class with no example
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\); row 1"):
        bench.confusion_matrix([0, 3], [0, 0], 3)
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        bench.confusion_matrix([0, 1], [0], 3)


def _run(acc: float, seed: int) -> dict[str, object]:
    cm = torch.zeros(8, 8, dtype=torch.long)
    cm[torch.arange(8), torch.arange(8)] = 3
    cm[0, 0] = 1
    cm[1, 2] = seed  # seed-dependent confusion of calm as happy
    return {
        "accuracy": acc,
        "macro_f1": acc - 0.05,
        "val_accuracy": 0.5,
        "epochs": 10,
        "best_epoch": 7,
        "seconds": 100.0 + seed,
        "confusion": cm,
    }


def test_records_summarise_seeds_classes_and_majority() -> None:
    runs = [_run(0.6, 0), _run(0.7, 1)]
    records = bench.build_records("audio_transformer (early head)", runs, "21-22-23-24")
    main = {r["metric"]: r for r in records if r["method"] == "audio_transformer (early head)"}
    assert main["accuracy"]["value"] == pytest.approx(0.65)
    assert main["accuracy"]["std"] == pytest.approx(0.0707, abs=1e-4)
    assert main["accuracy"]["per_seed"] == [0.6, 0.7] and main["accuracy"]["n_seeds"] == 2
    assert main["accuracy"]["seconds"] == pytest.approx(100.5)
    assert main["accuracy"]["dataset"] == "ravdess_speech"
    per_class = [r for r in records if "emotion" in r]
    assert [r["emotion"] for r in per_class] == list(EMOTIONS)
    calm = per_class[1]
    assert calm["confusion_row"] == [0, 6, 1, 0, 0, 0, 0, 0]  # summed over the two seeds
    assert calm["value"] == pytest.approx((1.0 + 3 / 4) / 2)
    majority = next(r for r in records if r["method"] == "majority class")
    assert majority["value"] == pytest.approx(7 / 45)  # rows 2, 7 and 6 x 6 clips: calm wins
    text = bench.notes("m", runs, 600.0)
    assert "65.0 ± 7.1 %" in text and "| calm | 0 | 6 | 1 |" in text and "10.0 min" in text


def test_the_shipped_config_trains_on_ravdess_actor_held_out(data_root: Path) -> None:
    cfg = bench.seed_config(bench.CONFIG, 2, "/tmp/x", ["optim.epochs=1"])
    assert cfg.seed == 2 and cfg.optim.epochs == 1 and cfg.device == "cpu"
    assert cfg.data.dataset == "ravdess_speech" and cfg.data.test_split == "test"
    assert cfg.data.val_split is None  # validation actors are carved from train
    assert tuple(cfg.data.options.get("test_actors", TEST_ACTORS)) == TEST_ACTORS
    assert list(cfg.model.encoders) == ["audio"]
    assert cfg.monitor == "accuracy"
