"""End to end on real Flickr8k images: ``polymodal train`` a tiny captioning run, then
``polymodal caption`` an image and a video with its checkpoint."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from polymodal.checkpoint import load_checkpoint
from polymodal.cli.main import main
from polymodal.training import load_config, train
from tests.cli.killing import assert_same_checkpoints, kill_after_first_checkpoint

pytestmark = pytest.mark.usefixtures("data_root")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "flickr8k_captioning.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """6 images per split at 64 px (2 x 2 feature steps), a 32-d two-layer decoder."""
    tmp = tmp_path_factory.mktemp("caption_cli")
    overrides = [
        f"output_dir={tmp / 'run'}",
        f"feature_cache={tmp / 'features'}",
        "data.limit=6",
        "data.min_count=1",
        "encoder.image_size=64",
        "model.dim=32",
        "model.num_layers=2",
        "model.num_heads=2",
        "model.dropout=0.0",
        "decode.beam_size=2",
        "optim.epochs=25",
        "patience=null",
        "optim.batch_size=3",
        "optim.lr=1e-2",
        "optim.warmup_steps=0",
        "progress=false",
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", str(CONFIG), *overrides])
    return {"tmp": tmp, "code": code, "run": tmp / "run", "out": out.getvalue()}


def _caption(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["caption", *argv])
    return code, out.getvalue()


def test_train_scores_val_and_test_by_caption_metrics(run: dict[str, Any]) -> None:
    assert run["code"] == 0
    results = json.loads((run["run"] / "results.json").read_text())
    assert results["task"] == "captioning" and results["monitor"] == "bleu_4"
    keys = {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d", "loss"}
    assert set(results["val"]) == keys and set(results["test"]) == keys
    assert results["feature_seconds"] > 0 and results["vocab_size"] > 4
    rows = [json.loads(x) for x in (run["run"] / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns the 30 captions
    ckpt = run["run"] / "checkpoints" / "best"
    assert {"captioner.json", "caption_vocab.json", "config.yaml"} <= {
        p.name for p in ckpt.iterdir()
    }


def test_caption_an_image(run: dict[str, Any], data_root: Path) -> None:
    # the last weights have fitted the 30 training captions; the first training image
    # shows two dogs in the snow
    name = (data_root / "flickr8k" / "Flickr_8k.trainImages.txt").read_text().split()[0]
    image = data_root / "flickr8k" / "images" / name
    last = run["run"] / "checkpoints" / "last"
    code, out = _caption([str(last), str(image), "--json"])
    assert code == 0
    got = json.loads(out)
    assert got["file"] == str(image) and isinstance(got["caption"], str) and got["caption"]
    assert "dog" in got["caption"].split() or "dogs" in got["caption"].split()
    code, out = _caption([str(run["run"]), str(image), "--beam", "1"])  # the best weights
    assert code == 0 and out.startswith(f"{image}\t") and len(out.split("\t")[1]) > 1


def test_caption_a_video_merges_repeated_captions(
    run: dict[str, Any], data_root: Path, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    images = sorted((data_root / "flickr8k" / "images").iterdir())[:2]
    from PIL import Image

    frames = [np.asarray(Image.open(p).convert("RGB").resize((64, 64))) for p in images]
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for frame in [frames[0]] * 4 + [frames[1]] * 4:  # 2 s of one image, 2 s of another
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for threshold, most in (("0.05", 2), ("0", 8)):  # keyframes: one per shot; every frame
        argv = [str(run["run"]), str(video), "--fps", "2", "--scene-threshold", threshold]
        code, out = _caption([*argv, "--json"])
        assert code == 0
        segments = json.loads(out)["segments"]
        assert 1 <= len(segments) <= most and segments[0]["start"] == 0.0
        assert segments[-1]["end"] == pytest.approx(4.0)
        if len(segments) == 2:  # the second shot starts at 2 s
            assert segments[1]["start"] == pytest.approx(2.0)
        for a, b in itertools.pairwise(segments):
            assert a["end"] == b["start"] and a["caption"] != b["caption"]


def test_caption_errors_name_the_problem(run: dict[str, Any], tmp_path: Path) -> None:
    code, _ = _caption([str(run["run"]), str(tmp_path / "missing.jpg")])
    assert code == 2
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder"):
        from polymodal.captioning.captioner import load_captioner

        load_captioner(tmp_path)


def test_serve_captions_an_uploaded_image(run: dict[str, Any], data_root: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from polymodal.captioning.captioner import load_captioner
    from polymodal.cli.serve import _is_captioning
    from polymodal.serve.app import create_app

    assert _is_captioning(run["run"]) and not _is_captioning(data_root / "flickr8k")
    captioner = load_captioner(run["run"] / "checkpoints" / "last")
    name = (data_root / "flickr8k" / "Flickr_8k.trainImages.txt").read_text().split()[0]
    image = (data_root / "flickr8k" / "images" / name).read_bytes()
    with TestClient(create_app(captioner=captioner)) as c:
        assert c.get("/health").json()["caption"] is True
        r = c.post("/caption", files={"image": ("dogs.jpg", image, "image/jpeg")})
        assert r.status_code == 200
        assert (
            r.json()["caption"]
            == captioner.caption_images([data_root / "flickr8k" / "images" / name])[0]
        )
        r = c.post("/caption", files={"image": ("bad.jpg", b"not a jpeg", "image/jpeg")})
        assert r.status_code == 400 and r.json()["field"] == "image"
        r = c.post("/caption", json={})
        assert r.status_code == 400 and r.json()["field"] == "image"
    with TestClient(create_app()) as c:
        r = c.post("/caption", files={"image": ("dogs.jpg", image, "image/jpeg")})
        assert r.status_code == 404 and "captioning run" in r.json()["error"]


def test_self_critical_fine_tuning_starts_from_a_run(run: dict[str, Any], tmp_path: Path) -> None:
    from polymodal.training.tasks import build_strategy

    base = [
        f"feature_cache={run['tmp'] / 'features'}",
        "data.limit=6",
        "data.min_count=1",
        "encoder.image_size=64",
        "model.num_heads=2",
        "model.dropout=0.0",
        "decode.beam_size=2",
        "optim.batch_size=3",
        "optim.warmup_steps=0",
        "progress=false",
        f"init_from={run['run']}",
    ]
    cfg = load_config(CONFIG, [*base, "model.dim=32", f"output_dir={tmp_path / 'scst'}"])
    start = build_strategy(cfg).model.state_dict()
    best = load_checkpoint(run["run"] / "checkpoints" / "best").weights
    assert all(torch.equal(start[k], best[k]) for k in best)  # the decoder starts from best
    cfg = cfg.replace(  # type: ignore[attr-defined]
        optim=cfg.optim.replace(objective="scst", samples=3, epochs=2, lr=1e-3)  # type: ignore[attr-defined]
    )
    result = train(cfg)
    assert len(result.history) == 2
    assert all(r["train_cider_d"] > 0 for r in result.history)  # the sampled reward, logged
    assert result.test is not None and result.test["bleu_1"] > 0
    with pytest.raises(ValueError, match=r"init_from=.*its decoder is .*use the same model"):
        build_strategy(load_config(CONFIG, [*base, "model.dim=16"]))
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder"):
        build_strategy(load_config(CONFIG, [*base[:-1], f"init_from={tmp_path}", "model.dim=32"]))


@pytest.mark.parametrize("objective", ["xe", "scst"])
def test_killed_captioning_run_resumes_bit_for_bit(tmp_path: Path, objective: str) -> None:
    # dropout on: resuming must restore the RNG state as well as weights and optimiser;
    # scst also its sampler and the epoch's rewards so far
    overrides = [
        f"optim.objective={objective}",
        "optim.samples=2",
        f"feature_cache={tmp_path / 'features'}",
        "data.limit=4",
        "data.min_count=1",
        "encoder.image_size=64",
        "model.dim=16",
        "model.num_layers=1",
        "model.num_heads=2",
        "model.dropout=0.1",
        "decode.beam_size=1",
        "optim.epochs=2",
        "patience=null",
        "optim.batch_size=2",
        "optim.warmup_steps=0",
        "checkpoint_every_steps=1",
        "progress=false",
    ]

    def config(out: Path) -> Any:
        return load_config(CONFIG, [f"output_dir={out}", *overrides])

    whole = train(config(tmp_path / "whole"))
    killed = [f"output_dir={tmp_path / 'killed'}", *overrides]
    state = kill_after_first_checkpoint(CONFIG, killed, tmp_path / "held")  # a real SIGKILL
    assert state["global_step"] == 1 and state["epoch"] == 0  # killed inside epoch 1 of 2
    resumed = train(config(tmp_path / "killed"), resume=True)

    drop = ("seconds",)
    strip = [{k: v for k, v in row.items() if k not in drop} for row in resumed.history]
    assert strip == [{k: v for k, v in row.items() if k not in drop} for row in whole.history]
    assert resumed.test == whole.test and resumed.best_epoch == whole.best_epoch
    assert_same_checkpoints(tmp_path / "whole", tmp_path / "killed")
