"""Run folders: a new run never overwrites an earlier one, and one writer per folder.

:meth:`~polymodal.training.loop.Trainer.fit` asks :func:`claim_run_dir` for its folder:

* a fresh run goes to ``cfg.run_dir`` (``output_dir``, or ``runs/<name>``) unless that
  folder already holds a run (a checkpoint or ``results.json``) or a live process is
  training in it; then it goes to the first free ``<folder>-2``, ``<folder>-3``, ...
  The earlier run is kept untouched; the new folder is logged and returned in
  :attr:`~polymodal.training.loop.TrainResult.run_dir`.
* ``resume=True`` continues the run in ``cfg.run_dir`` itself; ``overwrite=True`` replaces
  it (the only way a run is deleted).
* Every new run rewrites the *latest pointer* ``<folder>.latest`` next to the folder
  (``runs/NAME.latest`` for ``runs/NAME``): a one-line text file holding the name of the
  newest run folder of that name (``NAME-3``).  A plain file rather than a symlink, because
  it works the same on every OS and file system (Windows needs privileges for symlinks,
  some network and FAT file systems have none); ``polymodal evaluate runs/NAME.latest``
  (any command taking a run folder) follows it, and so does :func:`latest_run`.

The lock: while a process trains in a folder, the folder holds ``train.lock``, a JSON file
with its ``pid``, ``host`` and ``started`` time (UTC), created atomically (``O_EXCL``) and
removed when the run ends, however it ends.  A second writer (``resume``/``overwrite``) is
refused with a :class:`RunLockedError` naming the holder; a fresh run moves on to the next
folder.  A lock left by a killed process (its pid no longer runs on this host) is stale and
taken over with a log line.  A lock written on another host cannot be checked and is
respected: the error says which file to delete if that run is gone.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polymodal.checkpoint import CHECKPOINTS, LATEST_SUFFIX, atomic_write_text, checkpoint_exists

logger = logging.getLogger("polymodal.training")

RESULTS_FILE = "results.json"
LOG_JSONL = "metrics.jsonl"
LOG_CSV = "metrics.csv"
LOCK_FILE = "train.lock"


class RunLockedError(ValueError):
    """Another live process is training in the run folder."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run folder's lock: ``pid`` on ``host``, training since ``started``."""

    pid: int
    host: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run: its ``results.json`` or any complete checkpoint."""
    if (folder / RESULTS_FILE).is_file():
        return True
    ckpts = folder / CHECKPOINTS
    if not ckpts.is_dir():
        return False
    names = {p.name.split(".")[1] if p.name.startswith(".") else p.name for p in ckpts.iterdir()}
    return any(checkpoint_exists(ckpts / n) for n in names if n)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (POSIX: signal 0; Windows: its exit code)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - checked on Windows only
        import ctypes

        kernel32 = getattr(ctypes, "windll").kernel32  # noqa: B009 - absent off Windows
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: it exists
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def read_lock(folder: Path) -> LockHolder | None:
    """The holder recorded in ``folder``'s lock (``None``: no lock file); an unreadable
    lock (being written this instant, or damaged) reads as pid -1 on an unknown host."""
    path = folder / LOCK_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(d["pid"]), str(d["host"]), str(d["started"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return LockHolder(-1, "an unknown host", "at an unknown time")


class RunLock:
    """This process's lock on a run folder; :meth:`release` removes it (if still ours)."""

    def __init__(self, folder: Path, holder: LockHolder) -> None:
        self.folder = folder
        self.holder = holder

    def release(self) -> None:
        if read_lock(self.folder) == self.holder:
            (self.folder / LOCK_FILE).unlink(missing_ok=True)


def acquire_lock(folder: Path) -> RunLock:
    """Lock ``folder`` (made if missing) for this process.

    Raises:
        RunLockedError: a live process holds it (its pid, host and start time named).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    me = LockHolder(
        os.getpid(),
        socket.gethostname(),
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(folder)
            if holder is None:
                continue  # released meanwhile
            local = holder.host == me.host
            if holder.pid < 0 or not local or pid_alive(holder.pid):
                raise RunLockedError(
                    f"{folder} is locked by another training process ({holder.describe()}; "
                    f"{path}). Wait for it to finish, train into another output_dir, or, if "
                    f"that process is gone, delete {path}."
                ) from None
            logger.warning(
                "taking over the stale lock %s of pid %d (started %s), which no longer runs",
                path,
                holder.pid,
                holder.started,
            )
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": me.pid, "host": me.host, "started": me.started}, f)
        return RunLock(folder, me)
    raise RunLockedError(
        f"{folder}: could not take its lock {path}; another process keeps taking it. "
        "Train into another output_dir."
    )


def numbered(base: Path, k: int) -> Path:
    """``base`` for ``k == 1``, else ``<base>-<k>`` (``runs/NAME-2``)."""
    return base if k == 1 else base.with_name(f"{base.name}-{k}")


def latest_pointer(base: Path) -> Path:
    """The file naming the newest run of ``base``: ``<base>.latest`` beside it."""
    base = base if base.name else Path(os.path.abspath(base))
    return base.with_name(base.name + LATEST_SUFFIX)


def latest_run(base: str | os.PathLike[str]) -> Path:
    """The newest run folder started for ``base`` (``runs/NAME`` -> ``runs/NAME-3``);
    ``base`` itself when no pointer was written (runs from before pointers)."""
    base = Path(base)
    pointer = latest_pointer(base)
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return base
    return pointer.parent / name if name else base


def claim_run_dir(base: Path, resume: bool, overwrite: bool) -> tuple[Path, RunLock]:
    """The folder a run writes to, locked for this process (see the module docstring).

    Args:
        base: the configured run folder (``cfg.run_dir``).
        resume: continue the run in ``base``.
        overwrite: replace the run in ``base``.

    Raises:
        ValueError: ``resume`` and ``overwrite`` are both set.
        RunLockedError: ``resume``/``overwrite`` and a live process trains in ``base``.
    """
    if resume and overwrite:
        raise ValueError(
            "resume=True continues the run in the folder and overwrite=True replaces it; "
            "pass one of them (--resume or --overwrite), not both."
        )
    if resume:
        return base, acquire_lock(base)
    if overwrite:
        lock = acquire_lock(base)
        _point_latest(base, base)
        return base, lock
    k, why = 1, ""
    while True:
        folder = numbered(base, k)
        k += 1
        if (folder.exists() and not folder.is_dir()) or holds_run(folder):
            why = why or "already holds a run, which is kept"
            continue
        try:
            lock = acquire_lock(folder)
        except RunLockedError:
            holder = read_lock(folder)
            who = "" if holder is None else f" ({holder.describe()})"
            why = why or f"is being trained in by another process{who}"
            continue
        if holds_run(folder):  # a run finished in it between the check and the lock
            lock.release()
            why = why or "already holds a run, which is kept"
            continue
        break
    if folder != base:
        logger.warning(
            "%s %s; this run goes to %s (pass overwrite=True / --overwrite to replace a "
            "finished run, resume=True / --resume to continue it)",
            base,
            why,
            folder,
        )
    _point_latest(base, folder)
    return folder, lock


def _point_latest(base: Path, folder: Path) -> None:
    pointer = latest_pointer(base)
    atomic_write_text(pointer, folder.name + "\n")
    logger.info("%s now names %s", pointer, folder.name)


def write_logs(run_dir: Path, history: Sequence[dict[str, Any]]) -> None:
    """``metrics.jsonl`` and ``metrics.csv``, rewritten from the full history (atomically),
    so a resumed run's logs never repeat or miss an epoch."""
    atomic_write_text(run_dir / LOG_JSONL, "".join(json.dumps(r) + "\n" for r in history))
    columns: list[str] = []
    for r in history:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / LOG_CSV, buf.getvalue())


__all__ = [
    "LATEST_SUFFIX",
    "LOCK_FILE",
    "LOG_CSV",
    "LOG_JSONL",
    "RESULTS_FILE",
    "LockHolder",
    "RunLock",
    "RunLockedError",
    "acquire_lock",
    "claim_run_dir",
    "holds_run",
    "latest_pointer",
    "latest_run",
    "numbered",
    "pid_alive",
    "write_logs",
]
