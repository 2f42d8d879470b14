"""End to end on real Flickr8k images: train -> embed -> index build -> search, and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from polymodal.cli.main import main
from polymodal.joint.checkpoint import load_joint_checkpoint, save_joint_checkpoint


def _config(tmp: Path) -> dict[str, Any]:
    """A 32-d linear space over frozen EfficientNet and MiniLM, 8 Flickr8k images a split."""
    linear = {"projection": "linear"}
    return {
        "task": "contrastive",
        "output_dir": str(tmp / "run"),
        "model": {
            "dim": 32,
            "anchor": "image",
            "modalities": {
                "image": {
                    "spec": {"kind": "image", "shape": [3, 224, 224]},
                    "encoder": {"name": "efficientnet_lite0"},
                    **linear,
                },
                "text": {"spec": {"kind": "text"}, "encoder": {"name": "minilm"}, **linear},
            },
        },
        "pairs": {"flickr8k": {"dataset": "flickr8k", "other": "text", "test_split": None}},
        "optim": {"epochs": 3, "batch_size": 8, "warmup_steps": 0},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train (3 epochs on 8 images) -> embed 20 test images -> index build."""
    tmp = tmp_path_factory.mktemp("retrieval_cli")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(_config(tmp)))
    overrides = ["pairs.flickr8k.limit=8", f"feature_cache={tmp / 'features'}"]  # never ~/.cache
    assert main(["train", str(config), *overrides]) == 0
    assert len(list((tmp / "features").iterdir())) == 4  # train and val, image and text
    model, _ = load_joint_checkpoint(tmp / "run")
    weight = model.projections["text"][2].weight  # another model: same config, other weights
    with torch.no_grad():
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    save_joint_checkpoint(tmp / "other_ckpt", model)
    emb, index = tmp / "emb", tmp / "index"
    # `embed` takes the run folder (its best checkpoint).
    argv = ["embed", str(tmp / "run"), "flickr8k", "--split", "test", "--limit", "20"]
    assert main([*argv, "-o", str(emb)]) == 0
    assert main(["index", "build", str(emb), "-o", str(index)]) == 0
    return {
        "tmp": tmp,
        "ckpt": tmp / "run" / "checkpoints" / "best",
        "other": tmp / "other_ckpt",
        "emb": emb,
        "index": index,
    }


def test_embed_writes_vectors_ids_and_paths(run: dict[str, Path]) -> None:
    manifest = json.loads((run["emb"] / "embeddings.json").read_text())
    assert manifest["counts"] == {"image": 20, "text": 100}  # 5 captions per image
    assert manifest["dim"] == 32 and manifest["model_modalities"] == ["image", "text"]
    meta = json.loads((run["emb"] / "image" / "metadata.json").read_text())
    assert all(Path(m["path"]).is_file() for m in meta)
    ids = json.loads((run["emb"] / "text" / "ids.json").read_text())
    assert ids[0].endswith("#0") and ids[4].endswith("#4")


def test_search_text_prints_hits_and_writes_html(
    run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    page = run["tmp"] / "pages" / "hits.html"
    argv = ["search", str(run["index"]), "--text", "a dog runs on the grass", "--html", str(page)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    hits = [ln.split() for ln in lines[1:] if ln.split()[0].isdigit()]
    assert [int(h[0]) for h in hits] == list(range(1, 11))
    scores = [float(h[2]) for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(Path(h[3]).is_file() and h[3].endswith(".jpg") for h in hits)
    html = page.read_text()
    assert html.count("<img ") == 10 and "a dog runs on the grass" in html
    src = html.split('<img src="', 1)[1].split('"', 1)[0]
    assert (page.parent / src).is_file()  # relative to the page
    assert "<li>" in html  # each hit's captions under its image
    # the page links through symbolic links, not around them: a linked page folder and a
    # linked data folder keep the links the user made
    linked = run["tmp"] / "linked_pages"
    if not linked.exists():
        linked.symlink_to(run["tmp"] / "pages")
    page2 = linked / "hits2.html"
    assert main([*argv[:-1], str(page2)]) == 0
    src2 = page2.read_text().split('<img src="', 1)[1].split('"', 1)[0]
    assert (linked / src2).is_file() and not src2.startswith("file:")


def test_search_image_finds_itself(
    run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    meta = json.loads((run["emb"] / "image" / "metadata.json").read_text())
    assert main(["search", str(run["index"]), "--image", meta[3]["path"], "--k", "3"]) == 0
    first = capsys.readouterr().out.strip().splitlines()[1].split()
    assert first[1] == meta[3]["example"] and float(first[2]) == pytest.approx(1.0, abs=1e-4)


def test_query_modality_the_model_lacks(
    run: dict[str, Path], data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = data_root / "fsdd" / "recordings" / "0_george_0.wav"
    assert main(["search", str(run["index"]), "--audio", str(wav)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal search: error: The model cannot embed a audio query")
    assert err.count("\n") == 1


def test_incomplete_index_folder(run: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    broken = run["tmp"] / "broken_index"
    shutil.copytree(run["index"], broken)
    (broken / "vectors.npy").unlink()
    assert main(["search", str(broken), "--text", "a dog"]) == 2
    assert "is incomplete: ['vectors.npy'] is missing" in capsys.readouterr().err
    (broken / "index.json").unlink()
    assert main(["search", str(broken), "--text", "a dog"]) == 2
    assert "index.json is missing" in capsys.readouterr().err


def test_index_from_another_model(run: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", str(run["index"]), "--text", "a dog", "--checkpoint", str(run["other"])]
    assert main(argv) == 2
    assert "was built with model" in capsys.readouterr().err


def test_image_that_does_not_decode(
    run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = run["tmp"] / "not_an_image.jpg"
    bad.write_bytes(b"this is not a JPEG")
    assert main(["search", str(run["index"]), "--image", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "polymodal search: error:" in err and "not_an_image.jpg" in err


def test_index_build_errors(run: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["index", "build", str(run["emb"]), "-o", str(run["tmp"] / "i2"), "--modality", "audio"]
    assert main(argv) == 2
    assert "--modality 'audio' was not embedded" in capsys.readouterr().err
    assert main(["index", "build", str(run["tmp"]), "-o", str(run["tmp"] / "i3")]) == 2
    assert "embeddings.json not found" in capsys.readouterr().err


def test_embed_a_manifest(run: dict[str, Path], data_root: Path) -> None:
    images = sorted((data_root / "flickr8k" / "images").iterdir())[:3]
    manifest = run["tmp"] / "mine.csv"
    rows = ["id,image,text"] + [f"m{i},{p},photo number {i}" for i, p in enumerate(images)]
    manifest.write_text("\n".join(rows) + "\n")
    out = run["tmp"] / "emb_manifest"
    assert main(["embed", str(run["ckpt"]), str(manifest), "-o", str(out)]) == 0
    assert json.loads((out / "embeddings.json").read_text())["counts"] == {"image": 3, "text": 3}
    meta = json.loads((out / "image" / "metadata.json").read_text())
    assert [m["path"] for m in meta] == [str(p.resolve()) for p in images]
    assert json.loads((out / "text" / "ids.json").read_text()) == ["m0", "m1", "m2"]
