"""benchmarks/baselines.py: which config each method's runs use."""

from __future__ import annotations

import sys
from pathlib import Path

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
