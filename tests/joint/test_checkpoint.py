"""Joint checkpoints: found from the run folder in every kill state of a save, and every
damaged file refused, named, with what to do."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from polymodal.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from polymodal.data.modality import ModalitySpec
from polymodal.joint.checkpoint import load_joint_checkpoint, load_joint_weights
from polymodal.joint.checkpoint import save_joint_checkpoint as save
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.models.config import EncoderConfig


def _mod(name: str, in_dim: int) -> JointModalityConfig:
    encoder = EncoderConfig("mlp", {"dim": 6})
    return JointModalityConfig(ModalitySpec(name, "tabular", shape=(in_dim,)), encoder)


CONFIG = JointConfig((_mod("image", 4), _mod("text", 3)), dim=5)


def _model(step: int) -> JointEmbeddingModel:
    torch.manual_seed(step)  # distinct, reproducible weights per step
    return JointEmbeddingModel(CONFIG)


def _put(folder: Path, step: int, complete: bool = True) -> Path:
    """The joint checkpoint of ``step`` at ``folder``; ``complete=False`` leaves it as a
    kill part-way through writing or removing it does (no state.json)."""
    scratch = folder.parent / f"scratch{step}"
    save(scratch, _model(step), {"step": step})
    if not complete:
        (scratch / "state.json").unlink()
    os.replace(scratch, folder)
    return folder


# save_checkpoint over checkpoints/best: write .best.tmp-PID, remove a stale .best.old,
# best -> .best.old, .best.tmp-PID -> best, remove .best.old (state.json first).
KILL_STATES = {
    # name: ({folder: (step, complete)}, step read, folder read)
    "while writing the new one": ({"best": (1, True), ".best.tmp-7": (2, False)}, 1, "best"),
    "between the two renames": ({".best.old": (1, True), ".best.tmp-7": (2, True)}, 1, ".best.old"),
    "between the renames, no tmp": ({".best.old": (1, True)}, 1, ".best.old"),
    "while removing the old one": ({"best": (2, True), ".best.old": (1, False)}, 2, "best"),
    "first save, not renamed": ({".best.tmp-7": (1, True)}, 1, ".best.tmp-7"),
}


@pytest.mark.parametrize("state", list(KILL_STATES))
def test_run_folder_finds_best_in_every_kill_state(tmp_path: Path, state: str) -> None:
    folders, step, read_from = KILL_STATES[state]
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name, (s, complete) in folders.items():
        _put(checkpoints / name, s, complete)
    assert resolve_checkpoint(tmp_path / "run") == checkpoints / read_from
    for path in (tmp_path / "run", checkpoints / "best"):
        model, saved = load_joint_checkpoint(path)
        assert saved["step"] == step
        assert model.fingerprint() == _model(step).fingerprint()
    assert sorted(p.name for p in checkpoints.iterdir()) == sorted(folders)  # read in place


def test_incomplete_best_named(tmp_path: Path) -> None:
    best = _put(tmp_path / "run" / "checkpoints" / "best", 1)
    (best / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"best is incomplete: model\.safetensors is"):
        load_joint_checkpoint(tmp_path / "run")


def _weights(best: Path, change: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
    weights = load_checkpoint(best).weights
    save_file({k: change(k, v) for k, v in weights.items()}, str(best / "model.safetensors"))


def _nan(key: str, value: torch.Tensor) -> torch.Tensor:
    if key == "projections.text.1.net.0.weight":
        value = value.clone()
        value[0, 1] = math.nan
    return value


def _state(best: Path, **changes: object) -> None:
    state = json.loads((best / "state.json").read_text())
    (best / "state.json").write_text(json.dumps({**state, **changes}))


def _config(best: Path, **changes: object) -> None:
    config = json.loads((best / "joint_config.json").read_text())
    (best / "joint_config.json").write_text(json.dumps({**config, **changes}))


def _drop(best: Path, key: str) -> None:
    weights = load_checkpoint(best).weights
    del weights[key]
    save_file(weights, str(best / "model.safetensors"))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "weights truncated": (
        lambda b: (b / "model.safetensors").write_bytes(
            (b / "model.safetensors").read_bytes()[:99]
        ),
        r"best/model\.safetensors is truncated",
    ),
    "weights NaN": (
        lambda b: _weights(b, _nan),
        r"best/model\.safetensors holds 1 NaN or infinite value\(s\) in tensor "
        r"'projections\.text\.1\.net\.0\.weight'",
    ),
    "weights integer": (
        lambda b: _weights(b, lambda k, v: (v * 100).long()),
        r"best/model\.safetensors: tensor '\S+' is stored as torch\.int64 \(and \d+ more "
        r"tensors\), but the model's '\S+' is floating point",
    ),
    "weights of another shape": (
        lambda b: _weights(b, lambda k, v: v[:1] if k.endswith("bias") else v),
        r"best/model\.safetensors does not belong to this model; shape mismatch: .*Use the "
        r"joint_config\.json saved with these weights",
    ),
    "weights missing a tensor": (
        lambda b: _drop(b, "projections.image.1.net.0.weight"),
        r"missing from the checkpoint: projections\.image\.1\.net\.0\.weight",
    ),
    "state not an object": (
        lambda b: (b / "state.json").write_text("[1, 2]"),
        r"best/state\.json must hold a JSON object, got list",
    ),
    "state frozen_encoders a list": (
        lambda b: _state(b, frozen_encoders=["image"]),
        r"best/state\.json: 'frozen_encoders' must map modalities of the model",
    ),
    "state frozen_encoders unknown modality": (
        lambda b: _state(b, frozen_encoders={"audio": "0123"}),
        r"best/state\.json: 'frozen_encoders' .* got \{'audio': '0123'\}",
    ),
    "config empty": (
        lambda b: (b / "joint_config.json").write_text(""),
        r"best/joint_config\.json is empty",
    ),
    "config not JSON": (
        lambda b: (b / "joint_config.json").write_text('{"dim": 5, "modalities": {'),
        r"best/joint_config\.json is not valid JSON \(",
    ),
    "config not an object": (
        lambda b: (b / "joint_config.json").write_text('"joint"'),
        r"best/joint_config\.json must hold a JSON object, got str",
    ),
    "config without modalities": (
        lambda b: (b / "joint_config.json").write_text('{"dim": 5}'),
        r"best/joint_config\.json is not a valid joint model config: .*modalities",
    ),
    "config dim a string": (
        lambda b: _config(b, dim="five"),
        r"best/joint_config\.json is not a valid joint model config: .*dim",
    ),
}


# a damaged file is a CheckpointError; weights of another model are a plain ValueError
NOT_DAMAGED = {"weights of another shape", "weights missing a tensor"}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_joint_file_named(tmp_path: Path, case: str) -> None:
    damage, match = DAMAGE[case]
    best = _put(tmp_path / "run" / "checkpoints" / "best", 1)
    damage(best)
    with pytest.raises(ValueError, match=match) as e:
        load_joint_checkpoint(tmp_path / "run")
    assert isinstance(e.value, CheckpointError) == (case not in NOT_DAMAGED)


def test_load_joint_weights_refuses_integer_and_nonfinite_weights() -> None:
    model, weights = _model(0), dict(_model(1).state_dict())
    key = "projections.image.1.net.0.weight"
    inf = weights[key].clone()
    inf[2, 0] = math.inf
    with pytest.raises(CheckpointError, match=rf"w\.st: tensor '{key}' holds 1 NaN or infinite"):
        load_joint_weights(model, {**weights, key: inf}, "w.st")
    with pytest.raises(CheckpointError, match=rf"w\.st: tensor '{key}' is stored as torch\.int32"):
        load_joint_weights(model, {**weights, key: weights[key].int()}, "w.st")
    assert model.fingerprint() == _model(0).fingerprint()  # the refused weights: not loaded
    load_joint_weights(model, weights, "w.st")
    assert model.fingerprint() == _model(1).fingerprint()
