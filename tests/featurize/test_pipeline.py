"""Raw media -> per-utterance shards: one file end to end, bad files, resume, train on shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from polymodal.cli.main import main
from polymodal.data.decode import decode_video
from polymodal.featurize import FeaturizeConfig, FeaturizeError, Featurizer, featurize_many
from polymodal.featurize.face import GEOMETRY

FAST = FeaturizeConfig(embed_faces=False, asr="grammar", grammar="grid")


@pytest.fixture(scope="module")
def grid(data_root: Path) -> Path:
    return data_root / "grid_samples"


@pytest.fixture(scope="module")
def featurizer() -> Featurizer:
    return Featurizer(FAST)


def test_one_clip_gives_aligned_and_unaligned_features(grid: Path, featurizer: Featurizer) -> None:
    f = featurizer(grid / "bbaf2n.mpg")
    assert f.words_from == "asr" and 2.9 < f.duration < 3.1
    assert [u.text for u in f.utterances] == ["bin blue at f two now"]
    u = f.utterances[0]
    assert 0.8 < u.start < 1.1 and 2.0 < u.end < 2.3  # silero's speech segment
    starts = [w[0] for w in u.words]
    assert starts == sorted(starts) and all(u.start <= s < u.end for s in starts)
    g = len(GEOMETRY)
    face, voice = u.arrays["face"], u.arrays["voice"]
    assert face.shape[1] == g and 5 <= face.shape[0] <= 7  # 5 fps over ~1.2 s, no embedding
    assert voice.shape == (voice.shape[0], 3 + FAST.n_mels) and 110 <= voice.shape[0] <= 125
    assert u.arrays["face_words"].shape == (6, g) and u.arrays["voice_words"].shape == (6, 43)
    speaker = u.arrays["speaker"]
    assert speaker.shape == (256,) and torch.isclose(speaker.norm(), torch.tensor(1.0), atol=1e-4)
    for a in u.arrays.values():
        assert torch.isfinite(a).all()
    # word-aligned voice = the mean of the utterance's voice frames inside each word
    t = f.voice.frame_times
    t_utt = t[(t >= u.start) & (t < u.end)]
    a, b, _ = u.words[1]
    word = u.arrays["voice"][(t_utt >= a) & (t_utt < b)]
    assert len(word) > 0
    torch.testing.assert_close(u.arrays["voice_words"][1], word.mean(0), rtol=1e-4, atol=1e-4)


def test_subtitles_give_the_utterances(grid: Path, featurizer: Featurizer, tmp_path: Path) -> None:
    srt = tmp_path / "bbaf2n.srt"
    srt.write_text(
        "1\n00:00:00,900 --> 00:00:01,500\nbin blue\n\n2\n00:00:01,500 --> 00:00:02,200\n"
        "at f two now\n"
    )
    f = featurizer(grid / "bbaf2n.mpg", srt)
    assert f.words_from == "subtitles"
    assert [u.text for u in f.utterances] == ["bin blue", "at f two now"]
    assert [(u.start, u.end) for u in f.utterances] == [(0.9, 1.5), (1.5, 2.2)]
    assert f.utterances[1].arrays["voice_words"].shape[0] == 4


def _no_audio_video(src: Path, dst: Path) -> None:
    import av

    clip = decode_video(src, fps=25.0, max_frames=25)
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = clip.frames.shape[3], clip.frames.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in clip.frames:
            rgb = (frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_each_bad_file_gets_its_own_error_and_the_run_goes_on(
    grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import soundfile

    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "cut.mpg").write_bytes((grid / "lbax4n.mpg").read_bytes()[:6000])
    soundfile.write(bad / "silence.wav", np.zeros(16000 * 2, np.float32), 16000)
    _no_audio_video(grid / "bbaf2n.mpg", bad / "mute.avi")
    inputs = [str(grid / "bbaf2n.mpg"), *(str(p) for p in sorted(bad.iterdir()))]
    out = tmp_path / "out"
    code = main(
        [
            "featurize",
            *inputs,
            "-o",
            str(out),
            "--no-embed",
            "--asr",
            "grammar",
            "--grammar",
            "grid",
        ]
    )
    assert code == 1
    printed = capsys.readouterr().out
    assert "1 of 4 files featurised" in printed
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    by_file = {Path(e["file"]).name: e for e in errors}
    assert set(by_file) == {"cut.mpg", "silence.wav", "mute.avi"}
    assert "cut or corrupt" in by_file["cut.mpg"]["error"]
    assert "no speech was found" in by_file["silence.wav"]["error"]
    assert "no audio track and no subtitles" in by_file["mute.avi"]["error"]
    for e in errors:
        assert e["file"] in e["error"] or Path(e["file"]).name in e["error"]
        assert f"error: {e['error']}" in printed
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["bbaf2n#0"] and rows[0][
        "transcript"
    ] == "bin blue at f two now"
    with pytest.raises(FeaturizeError, match=r"mute\.avi: words: no audio track and no subtitles"):
        Featurizer(FAST)(bad / "mute.avi")


# Featurizes like `polymodal featurize`, but holds the process (sleeps) once the first file's
# rows.json is on disk and says so with a marker file, so the kill lands mid-run.
HOLD = """
import sys, time
from pathlib import Path
import polymodal.featurize.shards as shards
from polymodal.featurize import FeaturizeConfig
write = shards.write_file
def holding(out, job, features):
    rows = write(out, job, features)
    Path(sys.argv[1]).write_text(job.id)
    time.sleep(3600)
    return rows
shards.write_file = holding
cfg = FeaturizeConfig(embed_faces=False, asr="grammar", grammar="grid", face=False)
shards.featurize_many(sys.argv[3:], sys.argv[2], cfg, progress=False)
"""


def test_killed_run_resumes_to_the_same_shards(grid: Path, tmp_path: Path) -> None:
    clips = [str(grid / n) for n in ("bbaf2n.mpg", "lbax4n.mpg", "swiz3n.mpg")]
    cfg = FeaturizeConfig(embed_faces=False, asr="grammar", grammar="grid", face=False)
    ref, cut, held = tmp_path / "ref", tmp_path / "cut", tmp_path / "held"
    featurize_many(clips, ref, cfg, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(held), str(cut), *clips],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while not held.exists() and proc.poll() is None:  # waits for an event, not a time
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait()
    assert held.read_text() == "bbaf2n", proc.stderr.read().decode() if proc.stderr else ""
    assert not (cut / "manifest.jsonl").exists()
    report = featurize_many(clips, cut, cfg, progress=False)
    assert (report["skipped"], report["done"], report["failed"]) == (1, 3, [])
    assert (cut / "manifest.jsonl").read_text() == (ref / "manifest.jsonl").read_text()
    for row in (json.loads(x) for x in (ref / "manifest.jsonl").read_text().splitlines()):
        for m in ("voice", "voice_words", "speaker"):
            assert np.array_equal(np.load(ref / row[m]), np.load(cut / row[m])), (row["id"], m)


def test_train_reads_the_shards_directly(grid: Path, tmp_path: Path) -> None:
    names = ["bbaf2n", "brbk7n", "lbax4n", "lbbc2a", "sbia1a", "swiz3n"]
    manifest = tmp_path / "videos.jsonl"
    with manifest.open("w") as f:
        for n in names:  # label: the command word GRID sentences start with
            f.write(json.dumps({"video": str(grid / f"{n}.mpg"), "label": n[0]}) + "\n")
    out = tmp_path / "shards"
    cfg = FeaturizeConfig(embed_faces=False, asr="grammar", grammar="grid")
    report = featurize_many([manifest], out, cfg, progress=False)
    assert report["failed"] == [] and report["utterances"] == len(names)
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [n[0] for n in names]
    run_cfg = {
        "data": {
            "manifest": str(out / "manifest.jsonl"),
            "train_split": None,
            "test_split": None,
            "val_fraction": 0.34,
            "batch_size": 4,
        },
        "model": {
            "encoders": {
                "voice_words": {"name": "mlp", "params": {"dim": 8}},
                "face_words": {"name": "mlp", "params": {"dim": 8}},
                "speaker": {"name": "mlp", "params": {"dim": 8}},
            },
            "fusion": {"name": "early", "params": {"hidden_dim": 8}},
        },
        "optim": {"epochs": 2},
        "device": "cpu",
        "progress": False,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run_cfg))
    assert main(["train", str(path)]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["epochs_run"] == 2 and set(results["val"]) >= {"accuracy", "loss"}
