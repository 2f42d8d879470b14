"""Restoring a run from ``checkpoints/last``: every state checked, and named when it fails.

:meth:`~polymodal.training.loop.Trainer.fit` with ``resume=True`` reads the checkpoint
(its files checked by :func:`~polymodal.checkpoint.load_checkpoint`) and restores through
:func:`restore_trainer_state` the optimiser, schedule, random generators and the
strategy's extra state.  A missing or malformed entry raises a
:class:`~polymodal.checkpoint.CheckpointError` naming the file and the entry, never a
bare ``KeyError`` or a torch error from deep inside ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from polymodal.checkpoint import STATE, TRAINER_STATE, Checkpoint, CheckpointError
from polymodal.checkpoint_files import check_fields, restoring
from polymodal.training.seed import set_rng_state

#: What to do when the last checkpoint cannot be resumed from.
RESUME_ADVICE = (
    "Train again without --resume (resume=False) to start a new run beside this one (it is "
    "kept; the new run goes to <output_dir>-2), or with --overwrite (overwrite=True) to "
    "replace it."
)
_NEEDED = ("optimizer", "scheduler", "rng")


def check_resumable_state(ckpt: Checkpoint, state_type: type) -> None:
    """Refuse a checkpoint that lacks what a resumed run needs, or whose ``state.json``
    values do not have ``state_type``'s field types; before anything is restored."""
    file = ckpt.path / TRAINER_STATE
    missing = [k for k in _NEEDED if k not in ckpt.trainer_state]
    if not file.is_file():
        what = f"{TRAINER_STATE} is missing there"
    elif missing:
        what = f"{file} lacks the entries {missing}"
    elif "rng" not in ckpt.state:
        what = f"{ckpt.path / STATE} lacks the entry 'rng'"
    else:
        check_fields(ckpt.state, state_type, ckpt.path / STATE, RESUME_ADVICE)
        return
    raise CheckpointError(
        f"Cannot resume from {ckpt.path}: {what} (the optimiser, schedule and random states "
        f"a resumed run needs). {RESUME_ADVICE}"
    )


def restore_trainer_state(
    ckpt: Checkpoint,
    optimizer: torch.optim.Optimizer,
    load_optimizer: Callable[[torch.optim.Optimizer, Any], None],
    scheduler: LRScheduler,
    generators: Mapping[str, torch.Generator],
    load_extra_state: Callable[[dict[str, Tensor]], None],
) -> None:
    """Load the optimiser, schedule, RNG, generator and strategy states of ``ckpt`` (checked
    by :func:`check_resumable_state`); a state that does not fit names its file and entry."""
    file, saved = ckpt.path / TRAINER_STATE, ckpt.trainer_state
    with restoring(file, "the strategy's state", RESUME_ADVICE):
        load_extra_state(saved.get("strategy", {}))
    with restoring(file, "the optimiser state", RESUME_ADVICE):
        load_optimizer(optimizer, saved["optimizer"])  # optimizer.load_state_dict (or FSDP's)
        _check_optimizer_shapes(optimizer)
    with restoring(file, "the learning-rate schedule", RESUME_ADVICE):
        scheduler.load_state_dict(saved["scheduler"])
    with restoring(f"{ckpt.path / STATE} and {TRAINER_STATE}", "the RNG states", RESUME_ADVICE):
        set_rng_state(ckpt.state["rng"], saved["rng"])
    with restoring(file, "the random generators", RESUME_ADVICE):
        saved_gens: dict[str, Any] = saved.get("generators", {})
        for key, gen in generators.items():
            if key in saved_gens:
                gen.set_state(saved_gens[key])


def _check_optimizer_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Every per-parameter state tensor (Adam's moments) has its parameter's shape."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.dim() and value.shape != p.shape:
                    raise ValueError(
                        f"its {name!r} has shape {tuple(value.shape)} for a parameter of "
                        f"shape {tuple(p.shape)}"
                    )


__all__ = ["RESUME_ADVICE", "check_resumable_state", "restore_trainer_state"]
