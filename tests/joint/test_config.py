"""Joint (``task: contrastive``) run configs: parsing, messages, overrides, dispatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from polymodal.joint.model import JointConfig
from polymodal.joint.train import JointTrainConfig
from polymodal.training import load_config
from polymodal.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]

SMALL: dict[str, Any] = {
    "task": "contrastive",
    "model": {
        "dim": 16,
        "anchor": "image",
        "modalities": {
            "image": {
                "spec": {"kind": "image", "shape": [3, 64, 64]},
                "encoder": {"name": "efficientnet_lite0"},
                "projection": "linear",
            },
            "text": {"spec": {"kind": "text"}, "encoder": {"name": "minilm"}},
        },
    },
    "pairs": {"flickr8k": {"dataset": "flickr8k", "other": "text", "limit": 8}},
    "optim": {"epochs": 2, "batch_size": 8},
}


def _write(tmp_path: Path, d: dict[str, Any], name: str = "joint.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(d))
    return path


def test_repo_config_loads_and_round_trips() -> None:
    cfg = load_config(REPO / "configs" / "flickr8k.yaml")
    assert isinstance(cfg, JointTrainConfig) and cfg.task == "contrastive"
    assert cfg.name == "flickr8k" and cfg.model.names == ("image", "text")
    assert cfg.model.anchor == "image" and cfg.model.dim == 512
    assert cfg.optim.all_positives and cfg.optim.batch_size == 1024
    assert cfg.pairs["flickr8k"].val_split == "val"
    assert cfg.patience == 4 and cfg.monitor == "r1_mean"  # top level, every task's place
    assert cfg.run_dir == Path("runs/flickr8k")
    assert JointTrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    # YAML keys the modalities by name, each spec without its name.
    modalities = cfg.to_dict()["model"]["modalities"]
    assert list(modalities) == ["image", "text"] and "name" not in modalities["text"]["spec"]
    assert JointConfig.from_dict(cfg.model.to_dict()) == cfg.model


def test_overrides_reach_every_section(tmp_path: Path) -> None:
    path = _write(tmp_path, SMALL)
    cfg = load_config(
        path,
        [
            "optim.lr=3e-4",
            "model.modalities.text.dropout=0.3",
            "pairs.flickr8k.limit=4",
            "pairs.flickr8k.options={image_size: 32}",
            "seed=7",
        ],
    )
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.model["text"].dropout == 0.3
    assert cfg.pairs["flickr8k"].limit == 4
    assert cfg.pairs["flickr8k"].options == {"image_size": 32}
    assert isinstance(cfg, JointTrainConfig)
    assert cfg.seed == 7  # the one seed (it seeds the pairing: tests/joint/test_train.py)
    assert cfg.name == "joint"  # the file's stem
    assert cfg.replace(**{"optim.epochs": 5}).optim.epochs == 5
    changed = cfg.replace(**{"model.modalities.text.dropout": 0.1, "patience": 2})
    assert changed.model["text"].dropout == 0.1 and changed.patience == 2
    assert changed.model["image"] == cfg.model["image"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1e-3", "Unknown config key 'optim.lrr'. Valid keys at 'optim': lr,"),
        ("optim.lrr=1e-3", "Did you mean 'lr'?"),
        ("model.modalities.text.dropuot=0.1", "Did you mean 'dropout'?"),
        ("pairs.flickr8k.limt=3", "Valid keys at 'pairs.flickr8k': dataset, other,"),
        ("modle.dim=8", "Valid keys at the top level: task, name, seed,"),
        (
            "modle.dim=8",
            "progress, compile, distributed, model, pairs, optim, feature_cache. Did you mean 'model'?",
        ),
        ("task=contrastiv", "Did you mean 'contrastive'?"),
        ("optim.seed=3", "'optim.seed' is no longer here: the run's top-level 'seed'"),
        ("pairs.flickr8k.other=audio", "not a modality of the model ['image', 'text']"),
        ("optim.epochs=many", "Config key 'optim.epochs' must be int"),
        ("model.modalities.text.projection=mlpp", "Did you mean 'mlp'?"),
        ("pairs.flickr8k.val_split=test", "early stopping on the test split"),
        ("pairs.flickr8k.limit=0", "'pairs.flickr8k.limit' must be >= 1, got 0"),
    ],
)
def test_bad_values_fail_fast_with_the_key(tmp_path: Path, override: str, message: str) -> None:
    path = _write(tmp_path, SMALL)
    with pytest.raises(ValueError) as err:
        load_config(path, [override])  # what `polymodal train` calls
    assert message in str(err.value)


def test_missing_sections_and_spec_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing the required key\(s\) 'model', 'pairs'"):
        load_config(_write(tmp_path, {"task": "contrastive"}))
    with pytest.raises(ValueError, match=r"missing the required key\(s\) 'pairs'.*flickr8k"):
        load_config(_write(tmp_path, {"task": "contrastive", "model": SMALL["model"]}))
    with pytest.raises(ValueError, match="a modality's name is its key"):
        load_config(_write(tmp_path, SMALL), ["model.modalities.text.spec.name=caption"])


def test_dispatch_keeps_classifier_configs() -> None:
    mosi = load_config(REPO / "configs" / "mosi.yaml", ["optim.lr=3e-4"])
    assert isinstance(mosi, TrainConfig) and mosi.optim.lr == pytest.approx(3e-4)
    joint = load_config(REPO / "configs" / "flickr8k.yaml")
    assert isinstance(joint, JointTrainConfig)
    # A supervised file read as a contrastive run fails on its first foreign key.
    with pytest.raises(ValueError, match="Unknown config key 'data'"):
        JointTrainConfig.load(REPO / "configs" / "mosi.yaml")
