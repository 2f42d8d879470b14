"""Rebuilding a trained model from its run folder: every kill state of a checkpoint save is
found, and every damaged file is refused, named, with what to do."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from polymodal.checkpoint import CheckpointError, save_checkpoint
from polymodal.cli.main import main
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.inference import build_run_model, load_trained, resolve_checkpoint

SCHEMA = Schema(
    (ModalitySpec("x", ModalityKind.FEATURES, shape=(4,)),),
    TargetSpec(num_classes=3, class_names=("SITTING", "STANDING", "WALKING")),
)


def _config(seed: int) -> dict[str, Any]:
    return {
        "task": "supervised",
        "seed": seed,
        "model": {
            "encoders": {"x": {"name": "mlp", "params": {"dim": 8}}},
            "fusion": {"name": "early", "params": {"hidden_dim": 8}},
        },
        "data": {"batch_size": 4},
    }


def _weights(step: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(step)  # distinct, reproducible weights per step
    return dict(build_run_model(_config(step), SCHEMA).state_dict())


def _put(folder: Path, step: int, complete: bool = True) -> Path:
    """The checkpoint of ``step`` (a model built with seed ``step``) at ``folder``;
    ``complete=False`` leaves it as a kill part-way through writing or removing it does."""
    scratch = folder.parent / f"scratch{step}"
    files = {
        "config.yaml": yaml.safe_dump(_config(step)),
        "schema.json": json.dumps(SCHEMA.to_dict()),
    }
    save_checkpoint(scratch, _weights(step), {"step": step}, None, files)
    if not complete:
        (scratch / "state.json").unlink()
    os.replace(scratch, folder)
    return folder


# save_checkpoint over checkpoints/best: write .best.tmp-PID, remove a stale .best.old,
# best -> .best.old, .best.tmp-PID -> best, remove .best.old (state.json first).
KILL_STATES = {
    # name: ({folder: (step, complete)}, step read, folder read)
    "while writing the new one": ({"best": (1, True), ".best.tmp-7": (2, False)}, 1, "best"),
    "new one written, not renamed": ({"best": (1, True), ".best.tmp-7": (2, True)}, 1, "best"),
    "between the two renames": ({".best.old": (1, True), ".best.tmp-7": (2, True)}, 1, ".best.old"),
    "between the renames, no tmp": ({".best.old": (1, True)}, 1, ".best.old"),
    "after the second rename": ({"best": (2, True), ".best.old": (1, True)}, 2, "best"),
    "while removing the old one": ({"best": (2, True), ".best.old": (1, False)}, 2, "best"),
    "first save, not renamed": ({".best.tmp-7": (1, True)}, 1, ".best.tmp-7"),
    "stale .old removed, not renamed": (
        {".best.old": (0, False), ".best.tmp-7": (2, True)},
        2,
        ".best.tmp-7",
    ),
}


@pytest.mark.parametrize("state", list(KILL_STATES))
def test_run_folder_finds_best_in_every_kill_state(tmp_path: Path, state: str) -> None:
    folders, step, read_from = KILL_STATES[state]
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name, (s, complete) in folders.items():
        _put(checkpoints / name, s, complete)
    assert resolve_checkpoint(tmp_path / "run") == checkpoints / read_from
    assert resolve_checkpoint(checkpoints / "best") == checkpoints / read_from
    trained = load_trained(tmp_path / "run")
    assert trained.state == {"step": step} and trained.path == checkpoints / read_from
    for k, v in _weights(step).items():
        assert torch.equal(trained.model.state_dict()[k], v), k


def _manifest(path: Path) -> Path:
    rows = [{"id": f"r{i}", "x": [float(i), 1.0, -1.0, 0.5]} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_predict_a_run_killed_between_the_renames_of_best(tmp_path: Path) -> None:
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    _put(checkpoints / ".best.old", 1)
    _put(checkpoints / ".best.tmp-7", 2)
    out = tmp_path / "pred.csv"
    args = ["predict", str(tmp_path / "run"), str(_manifest(tmp_path / "m.jsonl")), "-o", str(out)]
    assert main(args) == 0
    assert len(out.read_text().splitlines()) == 6


def test_incomplete_best_named(tmp_path: Path) -> None:
    best = _put(tmp_path / "run" / "checkpoints" / "best", 1)
    (best / "model.safetensors").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"best is incomplete: model\.safetensors is missing"
    ):
        load_trained(tmp_path / "run")
    (best / "state.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"No checkpoint at .*run/checkpoints/best"):
        load_trained(tmp_path / "run")


def _nan_weights(best: Path) -> None:
    weights = _weights(1)
    weights["head.1.net.0.weight"][2, 0] = math.nan
    save_file(weights, str(best / "model.safetensors"))


def _int_weights(best: Path) -> None:
    weights = {k: (v * 100).long() for k, v in _weights(1).items()}
    save_file(weights, str(best / "model.safetensors"))


def _cut(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


DAMAGE = {
    "weights truncated": (
        lambda b: _cut(b / "model.safetensors"),
        r"best/model\.safetensors is truncated: it has \d+ bytes, but its header",
    ),
    "weights garbage": (
        lambda b: (b / "model.safetensors").write_bytes(b"\x00garbage" * 10),
        r"best/model\.safetensors is not a safetensors weights file",
    ),
    "weights NaN": (
        _nan_weights,
        r"best/model\.safetensors holds 1 NaN or infinite value\(s\) in tensor "
        r"'head\.1\.net\.0\.weight'",
    ),
    "weights integer": (
        _int_weights,
        r"best/model\.safetensors: tensor '\S+' is stored as torch\.int64 \(and \d+ more tensors\), "
        r"but the model's '\S+' is floating point \(torch\.float32\)",
    ),
    "schema empty": (
        lambda b: (b / "schema.json").write_text(""),
        r"best/schema\.json is empty: it was cut short",
    ),
    "schema not JSON": (
        lambda b: (b / "schema.json").write_text('{"modalities": ['),
        r"best/schema\.json is not valid JSON \(",
    ),
    "schema without modalities": (
        lambda b: (b / "schema.json").write_text("{}"),
        r"best/schema\.json is not a valid data schema: .*'modalities'",
    ),
    "config empty": (
        lambda b: (b / "config.yaml").write_text("\n"),
        r"best/config\.yaml is empty",
    ),
    "config not YAML": (
        lambda b: (b / "config.yaml").write_text("model: [\n"),
        r"best/config\.yaml is not valid YAML",
    ),
    "config without model": (
        lambda b: (b / "config.yaml").write_text("task: supervised\n"),
        r"best/config\.yaml: 'model' must be a mapping, got None",
    ),
    "config unknown encoder": (
        lambda b: (b / "config.yaml").write_text(
            yaml.safe_dump({**_config(1), "model": {"encoders": {"x": {"name": "nope"}}}})
        ),
        r"best/config\.yaml: .*'nope'",
    ),
    "state not an object": (
        lambda b: (b / "state.json").write_text('"done"'),
        r"best/state\.json must hold a JSON object, got str",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoint_file_named(tmp_path: Path, case: str) -> None:
    damage, match = DAMAGE[case]
    best = _put(tmp_path / "run" / "checkpoints" / "best", 1)
    damage(best)
    with pytest.raises(ValueError, match=match) as e:
        load_trained(tmp_path / "run")
    # a damaged file is a CheckpointError; a config of another polymodal version is not
    assert isinstance(e.value, CheckpointError) == (case != "config unknown encoder")


def test_cli_predict_damaged_weights_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = _put(tmp_path / "run" / "checkpoints" / "best", 1)
    _nan_weights(best)
    manifest = str(_manifest(tmp_path / "m.jsonl"))
    assert main(["predict", str(tmp_path / "run"), manifest, "-o", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal predict: error: ") and len(err.splitlines()) == 1
    assert f"{best}/model.safetensors holds 1 NaN" in err and "train again" in err
    assert not (tmp_path / "p.csv").exists()


def test_a_wrong_type_in_state_json_is_refused_by_every_reader(tmp_path: Path) -> None:
    best = _put(tmp_path / "best", 1)
    (best / "state.json").write_text(json.dumps({"epoch": "three", "best_epoch": 2}))
    with pytest.raises(CheckpointError, match=r"state\.json: 'epoch' must be an integer"):
        load_trained(best)
