from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

import polymodal.checkpoint as ckpt_mod
from polymodal.checkpoint import (
    check_weights,
    checkpoint_exists,
    load_checkpoint,
    load_weights,
    remove_stale_temporaries,
    save_checkpoint,
)


def _model(seed: int, hidden: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.LayerNorm(hidden), nn.Linear(hidden, 2))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_round_trip_weights_state_optimizer(tmp_path: Path) -> None:
    model = _model(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "last",
        model.state_dict(),
        {"epoch": 3, "best": 0.5},
        {"optimizer": opt.state_dict(), "rng": {"torch_cpu": torch.get_rng_state()}},
        {"config.yaml": "name: x\n"},
    )
    ck = load_checkpoint(path)
    assert ck.state == {"epoch": 3, "best": 0.5}
    assert ck.text("config.yaml") == "name: x\n"
    fresh = _model(1)
    load_weights(fresh, ck.weights)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(ck.trainer_state["optimizer"])  # loaded with weights_only=True
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert _leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError, match=r"no 'schema\.json'"):
        ck.text("schema.json")


@pytest.mark.parametrize("stage", ["weights", "trainer_state"])
def test_failure_mid_write_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    old = _model(0)
    save_checkpoint(tmp_path / "last", old.state_dict(), {"step": 1}, {"x": torch.zeros(1)})

    def half_write_then_fail(obj: object, path: object, *args: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"partial")
        raise OSError("disk full")

    target = "save_file" if stage == "weights" else "torch.save"
    if stage == "weights":
        monkeypatch.setattr(ckpt_mod, "save_file", half_write_then_fail)
    else:
        monkeypatch.setattr(ckpt_mod.torch, "save", half_write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(
            tmp_path / "last", _model(1).state_dict(), {"step": 2}, {"x": torch.ones(1)}
        )
    monkeypatch.undo()

    ck = load_checkpoint(tmp_path / "last")
    assert ck.state == {"step": 1}, target
    assert torch.equal(ck.trainer_state["x"], torch.zeros(1))
    for k, v in old.state_dict().items():
        assert torch.equal(ck.weights[k], v)
    assert _leftovers(tmp_path) == []


def test_crash_between_renames_recovers_previous(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "last", _model(0).state_dict(), {"step": 1})
    # The moment between "last -> .last.old" and ".last.tmp -> last".
    os.replace(tmp_path / "last", tmp_path / ".last.old")
    assert checkpoint_exists(tmp_path / "last")
    assert load_checkpoint(tmp_path / "last").state == {"step": 1}
    assert (tmp_path / "last").is_dir()


def test_stale_temporaries_removed(tmp_path: Path) -> None:
    (tmp_path / ".last.tmp-123").mkdir()
    (tmp_path / ".results.json.tmp-9").write_text("x")
    (tmp_path / "keep").mkdir()
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_missing_checkpoint_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No checkpoint at .*state\.json"):
        load_checkpoint(tmp_path / "nope")


def test_weights_of_another_model_named_clearly(tmp_path: Path) -> None:
    weights = _model(0, hidden=3).state_dict()
    other = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"not in the model|missing from the checkpoint") as e:
        check_weights(other, weights, "runs/x/best")
    msg = str(e.value)
    assert "missing from the checkpoint: 3.bias, 3.weight" in msg
    assert "0.weight: checkpoint (3, 4) vs model (5, 4)" in msg
    assert "runs/x/best" in msg
