from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import polymodal.checkpoint as ckpt_mod
from polymodal.checkpoint import (
    CheckpointError,
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
    ck = load_checkpoint(tmp_path / "last")
    assert ck.state == {"step": 1} and ck.path == tmp_path / ".last.old"
    assert not (tmp_path / "last").exists()  # a reader never renames the writer's folders
    remove_stale_temporaries(tmp_path)  # the writer, at its start, puts it back
    assert load_checkpoint(tmp_path / "last").path == tmp_path / "last"
    assert _leftovers(tmp_path) == []


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


# --------------------------------------------------------------------------- kill states
# save_checkpoint over an existing NAME: write .NAME.tmp-PID (state.json last), remove a
# stale .NAME.old, NAME -> .NAME.old, .NAME.tmp-PID -> NAME, remove .NAME.old (state.json
# first).  Each state a SIGKILL can leave, built by hand: the folders present, the step
# whose checkpoint must be read, and the folder it is read from.


def _put(folder: Path, step: int, complete: bool = True) -> None:
    """A checkpoint of ``step`` at ``folder`` (weights of _model(step)); ``complete=False``
    leaves it as a kill part-way through writing or removing it does (no state.json)."""
    scratch = folder.parent / f"scratch{step}"
    save_checkpoint(scratch, _model(step).state_dict(), {"step": step}, {"x": torch.ones(1)})
    if not complete:
        (scratch / "state.json").unlink()
    os.replace(scratch, folder)


KILL_STATES = {
    # name: ({folder: (step, complete)}, step read, folder read)
    "while writing the new one": ({"last": (1, True), ".last.tmp-7": (2, False)}, 1, "last"),
    "new one written, not renamed": ({"last": (1, True), ".last.tmp-7": (2, True)}, 1, "last"),
    "while removing a stale .old": (
        {"last": (1, True), ".last.old": (0, False), ".last.tmp-7": (2, True)},
        1,
        "last",
    ),
    "between the two renames": ({".last.old": (1, True), ".last.tmp-7": (2, True)}, 1, ".last.old"),
    "after the second rename": ({"last": (2, True), ".last.old": (1, True)}, 2, "last"),
    "while removing the old one": ({"last": (2, True), ".last.old": (1, False)}, 2, "last"),
    "first save, not renamed": ({".last.tmp-7": (1, True)}, 1, ".last.tmp-7"),
    "stale .old removed, not renamed": (
        {".last.old": (0, False), ".last.tmp-7": (2, True)},
        2,
        ".last.tmp-7",
    ),
}


@pytest.mark.parametrize("state", list(KILL_STATES))
def test_every_kill_state_reads_a_complete_checkpoint(tmp_path: Path, state: str) -> None:
    folders, step, read_from = KILL_STATES[state]
    for name, (s, complete) in folders.items():
        _put(tmp_path / name, s, complete)
    assert checkpoint_exists(tmp_path / "last")
    ck = load_checkpoint(tmp_path / "last")
    assert ck.state == {"step": step} and ck.path == tmp_path / read_from
    for k, v in _model(step).state_dict().items():
        assert torch.equal(ck.weights[k], v), k
    # The writer puts the checkpoint back under its name and clears the rest ...
    remove_stale_temporaries(tmp_path)
    assert load_checkpoint(tmp_path / "last").path == tmp_path / "last"
    assert load_checkpoint(tmp_path / "last").state == {"step": step}
    assert _leftovers(tmp_path) == []
    # ... or the next save does it by itself.
    for name, (s, complete) in folders.items():
        if not (tmp_path / name).exists():
            _put(tmp_path / name, s, complete)
    save_checkpoint(tmp_path / "last", _model(5).state_dict(), {"step": 5})
    assert load_checkpoint(tmp_path / "last").state == {"step": 5}


def test_first_save_killed_while_writing_says_so(tmp_path: Path) -> None:
    _put(tmp_path / ".last.tmp-7", 1, complete=False)
    assert not checkpoint_exists(tmp_path / "last")
    with pytest.raises(FileNotFoundError, match=r"first save was stopped .*\.last\.tmp-7"):
        load_checkpoint(tmp_path / "last")


class _Killed(BaseException):
    """A SIGKILL: nothing runs after it, not even the writer's own cleanup."""


def _kill_after(monkeypatch: pytest.MonkeyPatch, ops: int) -> dict[str, int]:
    """Let ``ops`` file-system mutations (rename/replace/unlink/rmdir) run, then fail every
    later one with _Killed, so the writer's cleanup cannot run either."""
    done = {"ops": 0}

    def wrap(fn: Any) -> Any:
        def op(*args: Any, **kwargs: Any) -> Any:
            if done["ops"] >= ops:
                raise _Killed
            done["ops"] += 1
            return fn(*args, **kwargs)

        return op

    for name in ("replace", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, wrap(getattr(os, name)))
    return done


def _save(folder: Path, step: int) -> None:
    save_checkpoint(
        folder, _model(step).state_dict(), {"step": step}, {"x": torch.ones(1)}, {"a.txt": "a"}
    )


def test_a_kill_at_any_point_of_a_save_leaves_one_complete_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Count the mutations of a save over an existing checkpoint with a stale .old ...
    _save(tmp_path / "count" / "last", 1)
    _put(tmp_path / "count" / ".last.old", 0, complete=False)
    total = _kill_after(monkeypatch, 10**6)
    _save(tmp_path / "count" / "last", 2)
    monkeypatch.undo()
    assert total["ops"] >= 8
    # ... then kill it after each of them in turn.
    for ops in range(total["ops"]):
        root = tmp_path / f"kill{ops}"
        _save(root / "last", 1)
        _put(root / ".last.old", 0, complete=False)
        _kill_after(monkeypatch, ops)
        with pytest.raises(_Killed):
            _save(root / "last", 2)
        monkeypatch.undo()
        step = load_checkpoint(root / "last").state["step"]
        assert step in (1, 2), ops
        remove_stale_temporaries(root)
        assert load_checkpoint(root / "last").state == {"step": step}, ops
        assert _leftovers(root) == [], ops


# --------------------------------------------------------------------------- damaged files


def _saved(tmp_path: Path, weights: dict[str, torch.Tensor] | None = None) -> Path:
    model = _model(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    return save_checkpoint(
        tmp_path / "best",
        model.state_dict() if weights is None else weights,
        {"step": 1},
        {"optimizer": opt.state_dict()},
        {"config.yaml": "name: x\n"},
    )


def _cut(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: _cut(f), r"model\.safetensors is truncated: it has \d+ bytes, but its header"),
        (lambda f: _cut(f, 0.95), r"model\.safetensors is truncated: it has \d+ bytes, but its"),
        (lambda f: f.write_bytes(b"abc"), r"model\.safetensors is truncated: it has 3 bytes"),
        (lambda f: f.write_bytes(b"hello world!"), r"model\.safetensors is not a safetensors"),
        (
            lambda f: f.write_bytes(f.read_bytes() + b"\0" * 4),
            r"model\.safetensors has 4 bytes after its last tensor",
        ),
    ],
    ids=["half", "last-bytes", "tiny", "garbage", "appended"],
)
def test_damaged_weights_file_named(tmp_path: Path, damage: Any, match: str) -> None:
    path = _saved(tmp_path)
    damage(path / "model.safetensors")
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path)
    assert str(path / "model.safetensors") in str(e.value)
    assert "train again" in str(e.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_refused_naming_the_tensor(tmp_path: Path, bad: float) -> None:
    weights = _model(0).state_dict()
    weights["2.weight"] = weights["2.weight"].clone()
    weights["2.weight"][1, 0] = bad
    path = _saved(tmp_path, weights)
    with pytest.raises(
        CheckpointError,
        match=r"best/model\.safetensors holds 1 NaN or infinite value\(s\) in tensor '2\.weight'",
    ):
        load_checkpoint(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_weights_refused_naming_the_tensor(tmp_path: Path, dtype: torch.dtype) -> None:
    weights = {k: (v * 10).to(dtype) for k, v in _model(0).state_dict().items()}
    ck = load_checkpoint(_saved(tmp_path, weights))
    source = str(ck.path / "model.safetensors")
    with pytest.raises(
        CheckpointError,
        match=rf"model\.safetensors: tensor '0\.bias' is stored as {dtype} \(and 5 more "
        r"tensors\), but the model's '0\.bias' is floating point \(torch\.float32\)",
    ):
        load_weights(_model(1), ck.weights, source)


class _Payload:
    """What a tampered trainer state could hold; never unpickled (weights_only=True)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.getcwd, ())


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: _cut(f), r"trainer_state\.pt is truncated or corrupt"),
        (lambda f: f.write_bytes(b""), r"trainer_state\.pt is empty"),
        (lambda f: f.write_bytes(b"not a zip"), r"trainer_state\.pt is not a polymodal trainer"),
        (
            lambda f: torch.save({"optimizer": {}, "x": _Payload()}, f),
            r"trainer_state\.pt is not a polymodal trainer state: it holds Python objects other "
            r"than tensors .* tampered with",
        ),
        (lambda f: torch.save([1, 2], f), r"trainer_state\.pt must hold a dict of states"),
    ],
    ids=["truncated", "empty", "garbage", "poisoned", "list"],
)
def test_damaged_trainer_state_named(tmp_path: Path, damage: Any, match: str) -> None:
    path = _saved(tmp_path)
    damage(path / "trainer_state.pt")
    assert load_checkpoint(path, with_trainer_state=False).state == {"step": 1}  # not read
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert str(path / "trainer_state.pt") in msg and "train again" in msg
    assert "weights_only" not in msg  # torch's advice to load unsafely never reaches users
    assert e.value.__cause__ is None
    assert e.value.__context__ is None or e.value.__suppress_context__


def test_non_finite_optimizer_state_named(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    state = torch.load(path / "trainer_state.pt", weights_only=True)
    state["optimizer"]["state"][0]["exp_avg"][0, 0] = math.nan
    torch.save(state, path / "trainer_state.pt")
    with pytest.raises(
        CheckpointError,
        match=r"trainer_state\.pt holds NaN or infinite values in 'optimizer\.state\.0\.exp_avg'",
    ):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"state\.json is empty"),
        ('{"step": 1', r"state\.json is not valid JSON \(Expecting .* at line 1, column 11\)"),
        ("[1, 2]", r"state\.json must hold a JSON object, got list \[1, 2\]"),
        (b"\xff\xfe", r"state\.json is not UTF-8 text"),
    ],
    ids=["empty", "cut", "list", "binary"],
)
def test_damaged_state_json_named(tmp_path: Path, text: str | bytes, match: str) -> None:
    path = _saved(tmp_path)
    if isinstance(text, bytes):
        (path / "state.json").write_bytes(text)
    else:
        (path / "state.json").write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_empty_text_file_and_incomplete_folder_named(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / "config.yaml").write_text("")
    with pytest.raises(CheckpointError, match=r"best/config\.yaml is empty"):
        load_checkpoint(path).text("config.yaml")
    (path / "model.safetensors").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"folder .*best is incomplete: model\.safetensors is missing"
    ):
        load_checkpoint(path)
