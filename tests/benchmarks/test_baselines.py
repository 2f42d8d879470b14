"""benchmarks/baselines.py: which config each method's runs use; its seed ensembles."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from polymodal.inference import load_trained, predict
from polymodal.training import TrainConfig
from polymodal.training.data import dataset_for_split

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import baselines as bench


def test_a_method_with_its_own_config_runs_that_config() -> None:
    cfg = bench.method_config("av_digits", ("audio",), "early", 2, "out", "audio")
    assert cfg.name == "audio_s2" and cfg.seed == 2 and cfg.output_dir == "out"
    assert list(cfg.model.encoders) == ["audio"] and cfg.device == "cpu"
    params = cfg.model.encoders["audio"].params
    assert params["freq_pool"] == "flatten" and not params.get("speaker_norm", False)
    norm = bench.method_config("av_digits", ("audio",), "early", 0, "out", "audio_speaker_norm")
    assert norm.model.encoders["audio"].params["speaker_norm"] is True
    image = bench.method_config("av_digits", ("image",), "early", 1, "out", "image")
    assert image.name == "av_digits_early_image_s1"
    assert image.data.options["images_per_recording"] == 6
    fused = bench.method_config("av_digits", ("audio", "image"), "early", 0, "out", "early")
    assert sorted(fused.model.encoders) == ["audio", "image"]
    assert "freq_pool" not in fused.model.encoders["audio"].params
    aug = bench.method_config(
        "av_digits", ("audio", "image"), "early", 0, "out", "early_tuned_audio"
    )
    assert aug.model.encoders["audio"] == cfg.model.encoders["audio"]  # the audio config's
    assert aug.model.encoders["image"] == fused.model.encoders["image"]
    assert aug.model.modality_dropout == fused.model.modality_dropout


def test_fusion_params_of_a_method_reach_its_fusion() -> None:
    for ds, mods in (("mosi", ("transcript", "audio")), ("har_phone_watch", ("phone", "watch"))):
        name = "late_calibrated" + ("_transcript_audio" if ds == "mosi" else "")
        cal = bench.method_config(ds, mods, "late", 0, "out", name)
        plain = bench.method_config(ds, mods, "late", 0, "out", name.replace("_calibrated", ""))
        assert cal.model.fusion.params == {**plain.model.fusion.params, "calibrate": True}
        assert cal.model.encoders == plain.model.encoders
    shipped = bench.method_config(
        "av_digits", ("audio", "image"), "late", 0, "out", "late_calibrated_image_augment"
    )
    assert shipped.model.fusion.params["calibrate"] is True
    uncal = bench.method_config(
        "av_digits", ("audio", "image"), "late", 0, "out", "late_image_augment"
    )
    assert uncal.model.fusion.params["calibrate"] is False
    assert uncal.model.encoders == shipped.model.encoders


def test_the_tuned_voice_in_the_shipped_late_fusion_is_the_audio_configs() -> None:
    voice = bench.method_config("av_digits", ("audio",), "early", 0, "out", "audio")
    late = bench.method_config(
        "av_digits",
        ("audio", "image"),
        "late",
        0,
        "out",
        "late_calibrated_tuned_audio_image_augment",
    )
    shipped = bench.method_config(
        "av_digits", ("audio", "image"), "late", 0, "out", "late_calibrated_image_augment"
    )
    assert late.model.encoders["audio"] == voice.model.encoders["audio"]
    assert late.model.encoders["image"] == shipped.model.encoders["image"]
    assert late.model.fusion == shipped.model.fusion and late.optim == shipped.optim


def _tiny_har(tmp_path: Path, seed: int) -> Any:
    encoder = {"name": "ts_cnn", "params": {"dim": 8, "channels": 8, "num_layers": 1}}
    return TrainConfig.from_dict(
        {
            "seed": seed,
            "data": {
                "dataset": "har_phone_watch",
                "options": {"modalities": ["phone", "watch"]},
                "batch_size": 256,
                "split_seed": 0,
            },
            "model": {
                "encoders": {"phone": encoder, "watch": encoder},
                "fusion": {"name": "late", "params": {}},
            },
            "optim": {"lr": 1e-2, "epochs": 1, "max_steps": 4},
            "device": "cpu",
            "progress": False,
            "output_dir": str(tmp_path / f"s{seed}"),
        }
    )


@pytest.mark.usefixtures("data_root")
def test_ensemble_scores_on_the_shared_validation_split(tmp_path: Path) -> None:
    from polymodal.training import train

    cfgs = [_tiny_har(tmp_path, s) for s in (0, bench.ENSEMBLE_STRIDE)]
    runs = [train(c) for c in cfgs]
    # an ensemble of one model is that model: its best validation and its test metrics
    one = bench.ensemble_scores([runs[0].run_dir], cfgs[0].data, 0)
    assert runs[0].best_val is not None and runs[0].test is not None
    assert one["val"]["accuracy"] == pytest.approx(runs[0].best_val["accuracy"])
    assert one["test"]["macro_f1"] == pytest.approx(runs[0].test["macro_f1"])
    # two: the mean of their class probabilities, on the one validation split they share
    two = bench.ensemble_scores([r.run_dir for r in runs], cfgs[1].data, cfgs[1].seed)
    val = dataset_for_split(cfgs[0].data, 0, "val")
    probs = [
        predict(load_trained(r.run_dir).model, val, "cpu", 256).outputs.softmax(-1) for r in runs
    ]
    target = torch.tensor(val.targets())
    expected = float(((probs[0] + probs[1]).argmax(-1) == target).float().mean())
    assert two["val"]["accuracy"] == pytest.approx(expected)
    assert two["val"]["loss"] != pytest.approx(one["val"]["loss"])


@pytest.mark.usefixtures("data_root")
def test_ensemble_scores_of_context_runs_read_videos(tmp_path: Path) -> None:
    """A context run (``task: context``) predicts video by video: an ensemble of one is the
    run's own validation and test."""
    from polymodal.models import EncoderConfig, FusionConfig, ModelConfig
    from polymodal.models.context import ContextConfig
    from polymodal.training import train
    from polymodal.training.config import ContextTrainConfig, DataConfig, OptimConfig

    cfg = ContextTrainConfig(
        data=DataConfig(dataset="mosi", options={"modalities": ["audio"]}, batch_size=8),
        model=ModelConfig({"audio": EncoderConfig("mlp", {"dim": 8})}, FusionConfig("early")),
        context=ContextConfig(hidden_dim=4),
        optim=OptimConfig(epochs=1, max_steps=3),
        seed=3,
        device="cpu",
        progress=False,
        output_dir=str(tmp_path / "ctx"),
    )
    res = train(cfg)
    one = bench.ensemble_scores([res.run_dir], cfg.data, cfg.seed)
    assert res.best_val is not None and res.test is not None
    assert one["val"]["accuracy"] == pytest.approx(res.best_val["accuracy"])
    assert one["test"]["macro_f1"] == pytest.approx(res.test["macro_f1"])
