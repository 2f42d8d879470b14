"""``optim.time_limit``: a run stops at the first step after its limit and finishes as any
other; a resumed run may be given more time.  The clock is a counter, never real time."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from polymodal.training import timelimit
from polymodal.training.loop import LoopState
from polymodal.training.timelimit import TimeLimit
from tests.training.test_loop import TinyModel, _cfg, _data, _fit, _weights


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reading of the limit's clock is one second later than the one before."""
    monkeypatch.setattr(timelimit, "clock", itertools.count().__next__)


def _state(run: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((run / "checkpoints/last/state.json").read_text())
    return state


def test_a_tiny_limit_stops_after_one_step_and_finishes(
    tmp_path: Path, ticking: None, caplog: pytest.LogCaptureFixture
) -> None:
    train, val, test = _data()
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 3, "time_limit": 0.5})
    with caplog.at_level(logging.INFO, "polymodal.training"):
        result = _fit(cfg, TinyModel(), train, val, test)
    run = tmp_path / "run"
    state = _state(run)
    assert (state["global_step"], state["finished"], state["time_limited"]) == (1, True, True)
    # the cut epoch was validated (no epoch had been): there is a best checkpoint
    assert result.epochs_run == 1 and result.best_epoch == 1 and len(result.history) == 1
    assert (run / "checkpoints/best/state.json").is_file()
    results = json.loads((run / "results.json").read_text())
    assert results["best_epoch"] == 1 and results["test"] == result.test is not None
    assert "time limit reached after 1 s at epoch 1, step 1" in caplog.text


def test_no_limit_changes_nothing(tmp_path: Path, ticking: None) -> None:
    train, val, _ = _data()
    result = _fit(_cfg(tmp_path, optim={"lr": 1e-2, "epochs": 2}), TinyModel(), train, val)
    assert result.epochs_run == 2 and _state(tmp_path / "run")["time_limited"] is False


def test_resumed_with_more_time_it_goes_on_to_the_same_weights(
    tmp_path: Path, ticking: None
) -> None:
    train, val, test = _data()
    optim: dict[str, Any] = {"lr": 1e-2, "epochs": 3}
    whole = TinyModel()
    ref = _fit(_cfg(tmp_path / "a", optim=optim), whole, train, val, test)

    # 6 steps an epoch; a limit of 8 s stops at epoch 2, step 8: epoch 1 was validated,
    # so the cut epoch is not, and the run stays mid-epoch
    limited = _cfg(tmp_path / "b", optim={**optim, "time_limit": 8})
    stopped = _fit(limited, TinyModel(), train, val, test)
    state = _state(tmp_path / "b/run")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    assert stopped.epochs_run == 1 and stopped.best_epoch == 1 and stopped.test is not None

    resumed = TinyModel()
    more = limited.replace(**{"optim.time_limit": None})  # resume-free: no config mismatch
    res = _fit(more, resumed, train, val, test, resume=True)
    for k, v in _weights(whole).items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert res.epochs_run == 3 and res.test == ref.test


@pytest.mark.parametrize(
    ("limit", "goes_on"), [(None, True), (20.0, True), (10.0, False), (5.0, False)]
)
def test_a_resumed_run_goes_on_only_with_time_left(limit: float | None, goes_on: bool) -> None:
    state = LoopState(seconds=10.0, finished=True, time_limited=True)
    TimeLimit(limit, state, steps_per_epoch=6)
    assert state.finished is not goes_on and state.time_limited is not goes_on
    done = LoopState(seconds=10.0, finished=True)  # finished by its epochs: stays finished
    TimeLimit(None, done, steps_per_epoch=6)
    assert done.finished


def test_time_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="time_limit"):
        _cfg(tmp_path, optim={"epochs": 1, "time_limit": 0})
