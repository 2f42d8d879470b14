"""Joint (``task: contrastive``) configs: parsing, validation messages, overrides, dispatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from polymodal.training.config import TrainConfig
from polymodal.training.joint_config import (
    JointTrainConfig,
    load_joint_config,
    load_train_config,
    replace_dotted,
)

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
    cfg = load_joint_config(REPO / "configs" / "flickr8k.yaml")
    assert cfg.name == "flickr8k" and cfg.model.names == ("image", "text")
    assert cfg.model.anchor == "image" and cfg.model.dim == 512
    assert cfg.optim.all_positives and cfg.optim.batch_size == 1024
    assert cfg.pairs["flickr8k"].val_split == "val"
    assert cfg.checkpoint_dir == Path("runs/flickr8k/checkpoints/best")
    assert JointTrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_overrides_reach_every_section(tmp_path: Path) -> None:
    path = _write(tmp_path, SMALL)
    cfg = load_joint_config(
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
    assert cfg.seed == 7 and cfg.optim.seed == 7  # the run's seed seeds the pairing too
    assert cfg.name == "joint"  # the file's stem
    assert replace_dotted(cfg, **{"optim.epochs": 5}).optim.epochs == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1e-3", "Unknown config key 'optim.lrr'. Valid keys at 'optim': epochs,"),
        ("optim.lrr=1e-3", "Did you mean 'lr'?"),
        ("model.modalities.text.dropuot=0.1", "Did you mean 'dropout'?"),
        ("pairs.flickr8k.limt=3", "Valid keys at 'pairs.flickr8k': dataset, other,"),
        ("modle.dim=8", "Valid keys at the top level: model, pairs, optim"),
        ("task=contrastiv", "Did you mean 'contrastive'?"),
        ("optim.seed=3", "top-level 'seed'"),
        ("pairs.flickr8k.other=audio", "not a modality of the model ['image', 'text']"),
        ("optim.epochs=many", "Config key 'optim.epochs' must be int"),
        ("model.modalities.text.projection=mlpp", "Did you mean 'mlp'?"),
        ("pairs.flickr8k.val_split=test", "early stopping on the test split"),
        ("pairs.flickr8k.limit=0", "'limit' must be >= 1"),
    ],
)
def test_bad_values_fail_fast_with_the_key(tmp_path: Path, override: str, message: str) -> None:
    path = _write(tmp_path, SMALL)
    with pytest.raises(ValueError) as err:
        load_train_config(path, [override])  # what `polymodal train` calls
    assert message in str(err.value)


def test_missing_sections_and_spec_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs 'model' .* and 'pairs'"):
        load_joint_config(_write(tmp_path, {"task": "contrastive", "model": SMALL["model"]}))
    with pytest.raises(ValueError, match="a modality's name is its key"):
        load_joint_config(_write(tmp_path, SMALL), ["model.modalities.text.spec.name=caption"])


def test_dispatch_keeps_classifier_configs() -> None:
    mosi = load_train_config(REPO / "configs" / "mosi.yaml", ["optim.lr=3e-4"])
    assert isinstance(mosi, TrainConfig) and mosi.optim.lr == pytest.approx(3e-4)
    joint = load_train_config(REPO / "configs" / "flickr8k.yaml")
    assert isinstance(joint, JointTrainConfig)
    with pytest.raises(ValueError, match="needs 'task: contrastive'"):
        load_joint_config(REPO / "configs" / "mosi.yaml")
