"""Run folders: never overwritten, the latest pointer, one live writer per folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from polymodal.checkpoint import resolve_checkpoint
from polymodal.training import TrainConfig
from polymodal.training.rundir import (
    LOCK_FILE,
    RunLockedError,
    acquire_lock,
    holds_run,
    latest_run,
    pid_alive,
    read_lock,
)
from tests.training.test_loop import TinyModel, _cfg, _data, _fit


def _lock(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    record = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-02T03:04:05"}
    path.write_text(json.dumps(record))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer names a process
    assert not pid_alive(proc.pid)
    return proc.pid


def _cfg1(tmp_path: Path) -> TrainConfig:
    return _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 1}, patience=None)


def test_holds_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert not holds_run(run)
    (run / "checkpoints" / ".last.tmp-1").mkdir(parents=True)  # a killed save's leftovers
    (run / "config.yaml").write_text("{}")
    assert not holds_run(run)
    (run / "results.json").write_text("{}")
    assert holds_run(run)
    _fit(_cfg1(tmp_path / "b"), TinyModel(), *_data()[:2])
    (tmp_path / "b" / "run" / "results.json").unlink()  # killed before the end
    assert holds_run(tmp_path / "b" / "run")


def test_a_live_lock_refuses_a_second_writer(tmp_path: Path) -> None:
    cfg = _cfg1(tmp_path)
    train, val, _ = _data()
    _fit(cfg, TinyModel(), train, val)
    lock = _lock(tmp_path / "run", os.getpid())  # a live process: this one
    for kw in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(
            RunLockedError,
            match=rf"locked by another training process \(pid "
            rf"{os.getpid()} on .*, started 2026-01-02T03:04:05; .*delete ",
        ):
            _fit(cfg, TinyModel(), train, val, **kw)
        assert lock.is_file()  # the holder's lock is left alone
    # a fresh run does not wait: it goes to the next folder
    assert _fit(cfg, TinyModel(), train, val).run_dir == tmp_path / "run-2"
    assert lock.is_file() and not (tmp_path / "run-2" / LOCK_FILE).exists()


def test_a_fresh_run_skips_a_folder_a_live_process_is_starting_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _lock(tmp_path / "run", os.getpid())  # no checkpoint yet, but a live writer
    with caplog.at_level("WARNING", logger="polymodal.training"):
        res = _fit(_cfg1(tmp_path), TinyModel(), *_data()[:2])
    assert res.run_dir == tmp_path / "run-2"
    assert f"run is being trained in by another process (pid {os.getpid()} on " in caplog.text


def test_a_stale_lock_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pid = _dead_pid()
    _lock(tmp_path / "run", pid)
    with caplog.at_level("WARNING", logger="polymodal.training"):
        res = _fit(_cfg1(tmp_path), TinyModel(), *_data()[:2])
    assert res.run_dir == tmp_path / "run"
    assert f"taking over the stale lock {tmp_path / 'run' / LOCK_FILE} of pid {pid}" in caplog.text
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released at the end


def test_locks_of_other_hosts_and_damaged_locks_are_respected(tmp_path: Path) -> None:
    _lock(tmp_path / "a", _dead_pid(), host="elsewhere.example")
    with pytest.raises(RunLockedError, match=r"pid \d+ on elsewhere.example"):
        acquire_lock(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / LOCK_FILE).write_text("{not json")
    with pytest.raises(RunLockedError, match="an unknown host"):
        acquire_lock(tmp_path / "b")


def test_lock_records_pid_and_start_and_is_released(tmp_path: Path) -> None:
    lock = acquire_lock(tmp_path / "run")
    holder = read_lock(tmp_path / "run")
    assert holder is not None and holder.pid == os.getpid() and holder.started[:2] == "20"
    with pytest.raises(RunLockedError):
        acquire_lock(tmp_path / "run")
    lock.release()
    assert read_lock(tmp_path / "run") is None
    acquire_lock(tmp_path / "run").release()


def test_lock_released_when_training_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _fit(_cfg1(tmp_path), TinyModel(fail_at_call=3), *_data()[:2])
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    cfg = _cfg1(tmp_path)
    train, val, _ = _data()
    _fit(cfg, TinyModel(), train, val)
    with pytest.raises(ValueError, match="pass one of them"):
        _fit(cfg, TinyModel(), train, val, resume=True, overwrite=True)


def test_resume_without_a_checkpoint_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        _fit(_cfg1(tmp_path), TinyModel(), *_data()[:2], resume=True)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.latest").exists()


def test_latest_pointer_is_followed_and_a_numbered_run_resumes_in_place(tmp_path: Path) -> None:
    cfg = _cfg1(tmp_path)
    train, val, _ = _data()
    _fit(cfg, TinyModel(), train, val)
    second = _fit(cfg, TinyModel(), train, val)
    assert latest_run(tmp_path / "run") == second.run_dir == tmp_path / "run-2"
    assert latest_run(tmp_path / "other") == tmp_path / "other"  # no pointer: itself
    pointer = tmp_path / "run.latest"
    assert resolve_checkpoint(pointer) == resolve_checkpoint(second.run_dir)
    # its own config.yaml names run-2, so resuming from it stays there
    saved = TrainConfig.from_yaml(second.run_dir / "config.yaml")
    again = _fit(saved, TinyModel(), train, val, resume=True)
    assert again.run_dir == second.run_dir and not (tmp_path / "run-3").exists()
