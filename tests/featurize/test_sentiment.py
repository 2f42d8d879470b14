"""``polymodal sentiment`` end to end on a GRID clip, with small models trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from polymodal.apps.sentiment import VALENCE, ModalityScore, fuse, label_of
from polymodal.cli.main import main

TEXTS = [
    ("what a wonderful film i loved it", "positive"),
    ("great acting and a lovely story", "positive"),
    ("i really enjoyed this", "positive"),
    ("the best movie of the year", "positive"),
    ("a terrible boring mess", "negative"),
    ("i hated every minute", "negative"),
    ("awful script and bad acting", "negative"),
    ("the worst film i have seen", "negative"),
]


def _train(
    tmp: Path, name: str, manifest: Path, encoders: dict[str, object], fusion: str = "early"
) -> Path:
    cfg = {
        "data": {
            "manifest": str(manifest),
            "train_split": None,
            "test_split": None,
            "val_fraction": 0.25,
            "batch_size": 8,
        },
        "model": {
            "encoders": encoders,
            "fusion": {"name": fusion, "params": {"hidden_dim": 8}},
        },
        "optim": {"epochs": 1},
        "device": "cpu",
        "progress": False,
        "output_dir": str(tmp / name),
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("models")
    texts = tmp / "texts.jsonl"
    texts.write_text("".join(json.dumps({"transcript": t, "label": y}) + "\n" for t, y in TEXTS))
    text_run = _train(
        tmp,
        "text",
        texts,
        {"transcript": {"name": "text_transformer", "params": {"dim": 8, "num_layers": 1}}},
    )
    clips = tmp / "clips.jsonl"
    emotions = list(VALENCE)
    with clips.open("w") as f:
        for actor in ("01", "02"):
            for code, emotion in enumerate(emotions, start=1):
                intensity = "01"
                name = f"03-01-{code:02d}-{intensity}-01-01-{actor}.ogg"
                path = data_root / "ravdess_speech" / f"Actor_{actor}" / name
                f.write(json.dumps({"audio": str(path), "label": emotion, "group": actor}) + "\n")
    voice_run = _train(
        tmp,
        "voice",
        clips,
        # the default voice model's encoder: standardised per speaker (the manifest's group
        # column in training, the whole video in `sentiment`)
        {"audio": {"name": "audio_ge2e", "params": {"dim": 8, "speaker_norm": True}}},
    )
    return text_run, voice_run


def test_sentiment_timeline_of_a_grid_clip(
    models: tuple[Path, Path], data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text_run, voice_run = models
    clip = data_root / "grid_samples" / "bbaf2n.mpg"
    out = tmp_path / "out"
    args = ["sentiment", str(clip), "--text-model", str(text_run), "--voice-model", str(voice_run)]
    assert main([*args, "--asr", "grammar", "--grammar", "grid", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bin blue at f two now" in printed and "timeline.png" in printed
    result = json.loads((out / "sentiment.json").read_text())
    assert result["video"] == str(clip)
    (u,) = result["utterances"]
    assert 0.8 < u["start"] < u["end"] < 2.4 and u["text"] == "bin blue at f two now"
    assert set(u["modalities"]) == {"words", "voice", "face"}
    weights = [m["weight"] for m in u["modalities"].values()]
    assert abs(sum(weights) - 1.0) < 1e-6 and all(0 < w < 1 for w in weights)
    fused = sum(m["score"] * m["weight"] for m in u["modalities"].values())
    assert u["score"] == pytest.approx(fused) and -1 <= u["score"] <= 1
    assert u["label"] == label_of(u["score"])
    assert u["voice_emotion"] in VALENCE and abs(sum(u["voice_probabilities"].values()) - 1) < 1e-3
    assert set(u["face"]) >= {"smile", "mouth_open", "yaw"}
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fusion_is_attention_over_confidences() -> None:
    scores = {"words": ModalityScore(0.8, 0.8), "voice": ModalityScore(-0.5, 0.1)}
    fused = fuse(scores)
    assert scores["words"].weight > scores["voice"].weight
    assert scores["words"].weight + scores["voice"].weight == pytest.approx(1.0)
    assert fused == pytest.approx(0.8 * scores["words"].weight - 0.5 * scores["voice"].weight)
    assert fuse({}) == 0.0
    assert [label_of(x) for x in (0.5, 0.05, -0.5)] == ["positive", "neutral", "negative"]


def test_missing_video_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sentiment", str(tmp_path / "none.mp4")]) == 2
    assert "none.mp4 does not exist" in capsys.readouterr().err


def _shard_run(tmp: Path, grid: Path, labels: dict[str, str], name: str) -> Path:
    """A tiny fusion trained on featurised GRID clips with the given labels."""
    manifest = tmp / f"{name}.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"video": str(grid / f"{n}.mpg"), "label": y}) + "\n"
            for n, y in labels.items()
        )
    )
    shards = tmp / f"{name}_shards"
    assert main(["featurize", str(manifest), "-o", str(shards), "--no-embed", "--asr", "none"]) == 0
    mlp = {"name": "mlp", "params": {"dim": 8}}
    return _train(tmp, name, shards / "manifest.jsonl", {"voice": mlp, "speaker": mlp}, "attention")


def test_own_model_reads_a_video_with_its_fusion_weights(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = data_root / "grid_samples"
    labels = {
        "bbaf2n": "positive",
        "brbk7n": "negative",
        "lbax4n": "positive",
        "sbia1a": "negative",
    }
    run = _shard_run(tmp_path, grid, labels, "sentiment_run")
    out = tmp_path / "out"
    args = ["sentiment", str(grid / "swiz3n.mpg"), "--model", str(run), "--asr", "none"]
    assert main([*args, "-o", str(out)]) == 0
    text = (out / "sentiment.json").read_text()
    assert "NaN" not in text  # readings a model does not give are null: valid JSON
    (u,) = json.loads(text)["utterances"]
    assert set(u["modalities"]) == {"speaker", "voice"}
    weights = [m["weight"] for m in u["modalities"].values()]
    assert sum(weights) == pytest.approx(1.0) and all(
        m["score"] is None for m in u["modalities"].values()
    )
    assert -1 <= u["score"] <= 1 and u["label"] == label_of(u["score"])

    other = _shard_run(tmp_path, grid, {k: k[0] for k in labels}, "letters_run")
    assert main([*args[:3], str(other), "--asr", "none", "-o", str(out)]) == 2
    assert "classes ['b', 'l', 's'] carry no sentiment" in capsys.readouterr().err
