"""Shared fixtures: a tiny trained MOSI run and a tiny Flickr8k index, built once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from polymodal.cli.main import main
from tests.conftest import require

require("fastapi")
require("httpx")

TINY = {
    "data": {"dataset": "mosi", "options": {"modalities": ["text", "audio"]}, "batch_size": 64},
    "model": {
        "encoders": {
            "text": {"name": "mlp", "params": {"dim": 16, "num_layers": 1}},
            "audio": {"name": "mlp", "params": {"dim": 16, "num_layers": 1}},
        },
        "fusion": {"name": "early", "params": {"hidden_dim": 16}},
    },
    "optim": {"lr": 3.0e-3, "epochs": 1},
    "device": "cpu",
    "patience": None,
    "progress": False,
}


def _joint_config(tmp: Path) -> dict[str, Any]:
    linear = {"projection": "linear"}
    return {
        "task": "contrastive",
        "output_dir": str(tmp / "joint"),
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
        "optim": {"epochs": 1, "batch_size": 8, "warmup_steps": 0},
    }


@pytest.fixture(scope="session")
def mosi_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """One epoch of a 16-d MLP on MOSI's text and audio features."""
    folder = tmp_path_factory.mktemp("serve_run")
    cfg = folder / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = folder / "mosi_tiny"
    assert main(["train", str(cfg), f"output_dir={run}"]) == 0
    return run


@pytest.fixture(scope="session")
def flickr_index(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A 32-d joint space trained 1 epoch on 8 Flickr8k images; 12 test images indexed."""
    tmp = tmp_path_factory.mktemp("serve_index")
    config = tmp / "joint.yaml"
    config.write_text(yaml.safe_dump(_joint_config(tmp)))
    overrides = ["pairs.flickr8k.limit=8", f"feature_cache={tmp / 'features'}"]
    assert main(["train", str(config), *overrides]) == 0
    emb, index = tmp / "emb", tmp / "flickr_index"
    argv = ["embed", str(tmp / "joint"), "flickr8k", "--split", "test", "--limit", "12"]
    assert main([*argv, "--modalities", "image", "-o", str(emb)]) == 0
    assert main(["index", "build", str(emb), "-o", str(index)]) == 0
    return index


@pytest.fixture(scope="session")
def served(mosi_run: Path, flickr_index: Path) -> dict[str, Any]:
    from polymodal.inference import load_trained
    from polymodal.serve.predictor import Predictor
    from polymodal.serve.searcher import Searcher

    return {
        "predictor": Predictor(load_trained(mosi_run), "mosi_tiny", max_upload_bytes=64 * 1024),
        "searcher": Searcher(flickr_index, "flickr_index"),
    }


@pytest.fixture()
def client(served: dict[str, Any]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from polymodal.serve.app import ServeConfig, create_app

    app = create_app(
        [served["predictor"]],
        [served["searcher"]],
        config=ServeConfig(max_batch=8, max_wait_ms=2, queue=16, max_upload_mb=64 / 1024),
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def image_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    """One epoch on a 24-row manifest of Flickr8k photos and an ``age`` column (frozen
    EfficientNet-Lite0 + MLP; ``polymodal train m.csv --label label``)."""
    tmp = tmp_path_factory.mktemp("serve_image_run")
    images = sorted((data_root / "flickr8k" / "images").glob("*.jpg"))[:24]
    rows = ["id,photo,age,label"] + [
        f"r{i},{p},{20 + i},{'a' if i % 2 else 'b'}" for i, p in enumerate(images)
    ]
    manifest = tmp / "photos.csv"
    manifest.write_text("\n".join(rows) + "\n")
    run = tmp / "photos_run"
    argv = ["train", str(manifest), "optim.epochs=1", f"output_dir={run}", "progress=false"]
    assert main([*argv, "--label", "label"]) == 0
    return {"run": run, "manifest": manifest}
