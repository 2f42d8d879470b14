"""Resuming from a damaged ``checkpoints/last``: each entry checked and named, never a bare
``KeyError`` or a torch error from inside ``load_state_dict``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from polymodal.checkpoint import CheckpointError
from polymodal.training import TrainConfig
from tests.training.test_loop import TinyModel, _cfg, _data, _fit


@pytest.fixture
def run(tmp_path: Path) -> TrainConfig:
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 1})
    _fit(cfg, TinyModel(), *_data())
    return cfg


def _last(cfg: TrainConfig) -> Path:
    return Path(cfg.output_dir) / "checkpoints" / "last"


def _edit_state(cfg: TrainConfig, edit: Callable[[dict[str, Any]], None]) -> None:
    file = _last(cfg) / "state.json"
    state = json.loads(file.read_text())
    edit(state)
    file.write_text(json.dumps(state))


def _edit_trainer_state(cfg: TrainConfig, edit: Callable[[dict[str, Any]], None]) -> None:
    file = _last(cfg) / "trainer_state.pt"
    state = torch.load(file, weights_only=True)
    edit(state)
    torch.save(state, file)


def _resume(cfg: TrainConfig) -> None:
    _fit(cfg, TinyModel(), *_data(), resume=True)


def test_missing_trainer_state_named(run: TrainConfig) -> None:
    (_last(run) / "trainer_state.pt").unlink()
    with pytest.raises(
        CheckpointError,
        match=r"Cannot resume from .*last: trainer_state\.pt is missing there \(the optimiser, "
        r"schedule and random states .*\)\. Train again without --resume",
    ):
        _resume(run)


def test_trainer_state_without_an_entry_named(run: TrainConfig) -> None:
    _edit_trainer_state(run, lambda s: s.pop("optimizer"))
    with pytest.raises(
        CheckpointError, match=r"last/trainer_state\.pt lacks the entries \['optimizer'\]"
    ):
        _resume(run)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("epoch", "three", r"'epoch' must be an integer, got str 'three'"),
        ("global_step", True, r"'global_step' must be an integer, got bool True"),
        ("best", "high", r"'best' must be a number or null, got str 'high'"),
        ("history", {"epoch": 1}, r"'history' must be a list of objects, got dict"),
        ("finished", 1, r"'finished' must be true or false, got int 1"),
    ],
)
def test_wrong_type_in_state_json_named(
    run: TrainConfig, key: str, value: Any, expected: str
) -> None:
    _edit_state(run, lambda s: s.__setitem__(key, value))
    with pytest.raises(CheckpointError, match=r"last/state\.json: " + expected):
        _resume(run)


def test_malformed_rng_state_named(run: TrainConfig) -> None:
    _edit_state(run, lambda s: s.__setitem__("rng", {"python": [3]}))
    with pytest.raises(
        CheckpointError,
        match=r"Cannot restore the RNG states from .*last/state\.json and trainer_state\.pt "
        r"\(ValueError: .*\); it does not fit this run or was modified",
    ):
        _resume(run)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["optimizer"].__setitem__("param_groups", s["optimizer"]["param_groups"][:1]),
        lambda s: s["optimizer"]["state"][0].__setitem__("exp_avg", torch.zeros(2, 2)),
    ],
    ids=["groups", "moment-shape"],
)
def test_optimizer_state_that_does_not_fit_named(
    run: TrainConfig, edit: Callable[[dict[str, Any]], None]
) -> None:
    _edit_trainer_state(run, edit)
    with pytest.raises(
        CheckpointError, match=r"Cannot restore the optimiser state from .*last/trainer_state\.pt"
    ):
        _resume(run)


def test_resume_after_a_kill_between_the_renames_of_last(run: TrainConfig) -> None:
    last = _last(run)
    os.replace(last, last.parent / ".last.old")  # killed between the two renames
    _resume(run)  # the trainer puts .last.old back and goes on
    assert (last / "state.json").is_file()
    assert not (last.parent / ".last.old").exists()
