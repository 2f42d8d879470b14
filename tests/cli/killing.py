"""Kill a ``polymodal train`` process with SIGKILL right after its first ``checkpoints/last``;
compare a resumed run's checkpoints with an uninterrupted run's.

The child runs a config like ``polymodal train`` does, but holds (sleeps) once the first
``checkpoints/last`` is on disk and says so with a marker file; the parent waits for that
file, not for a time, and kills the child there.  So the kill always lands mid-run,
however fast or loaded the machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HOLD_DRIVER = """
import sys, time
from pathlib import Path
from polymodal.training import Callback, load_config, train

class HoldAfterFirstCheckpoint(Callback):
    def on_checkpoint(self, trainer, which, path):
        if which == "last":
            Path(sys.argv[2]).write_text(str(path))
            time.sleep(3600)

train(load_config(sys.argv[1], sys.argv[3:]), callbacks=[HoldAfterFirstCheckpoint()])
"""


def kill_after_first_checkpoint(config: Path, overrides: list[str], held: Path) -> dict[str, Any]:
    """Train ``config`` with ``overrides`` in a child process, SIGKILL it after its first
    ``checkpoints/last`` was written; returns that checkpoint's ``state.json``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_DRIVER, str(config), str(held), *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while not held.exists() and proc.poll() is None:  # waits for an event, not a time
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup, no atexit
    finally:
        proc.wait()
    assert held.exists(), proc.stderr.read().decode() if proc.stderr else ""
    state: dict[str, Any] = json.loads((Path(held.read_text()) / "state.json").read_text())
    return state


def assert_same_checkpoints(whole: Path, resumed: Path, strategy_state: bool = False) -> None:
    """The ``best`` and ``last`` checkpoints of two run folders hold equal weights (and, with
    ``strategy_state``, equal strategy tensors: the losses' temperatures)."""
    import torch

    from polymodal.checkpoint import load_checkpoint

    for which in ("last", "best"):
        a = load_checkpoint(whole / "checkpoints" / which)
        b = load_checkpoint(resumed / "checkpoints" / which)
        assert sorted(a.weights) == sorted(b.weights)
        for k in a.weights:
            assert torch.equal(a.weights[k], b.weights[k]), (which, k)
        if strategy_state:
            assert sorted(a.trainer_state["strategy"]) == sorted(b.trainer_state["strategy"])
            for k, v in a.trainer_state["strategy"].items():
                assert torch.equal(v, b.trainer_state["strategy"][k]), (which, k)
