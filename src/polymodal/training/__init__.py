"""Training: one loop, and each training mode a strategy of it.

=================== =================================================================
file                holds
=================== =================================================================
``loop.py``         :class:`Trainer` (the loop), :class:`Strategy`, :class:`TrainResult`,
                    :class:`LoopState`, :class:`Callback`
``config.py``       :class:`RunConfig` (what every run shares), :class:`DataConfig`,
                    :class:`OptimConfig`, :class:`TrainConfig`, :class:`ContextTrainConfig`,
                    :func:`load_config`
``tasks.py``        the registry of training tasks (config class + strategy builder)
``supervised.py``   ``task: supervised``: labels of single examples
``context.py``      ``task: context``: utterances in their video's context
``balance.py``      ``optim.balance``: modality-imbalance methods (OGM-GE, Gradient-Blending,
                    MLA) as hooks of the supervised strategy
``probe.py``        :func:`~polymodal.training.probe.probe_modalities`: a linear probe per
                    frozen encoder (``polymodal evaluate RUN --probe``)
``rundir.py``       run folders: never overwritten (``runs/NAME-2``), the
                    ``runs/NAME.latest`` pointer, the lock of a folder being trained in
``data.py``         a run's splits (validation carved by group) and epoch order
``distributed.py``  ``torchrun``: the process group, DDP, each rank's share of a batch
``schedule.py``     the one warmup + cosine schedule
``seed.py``         seeding and saving/restoring every random generator
=================== =================================================================

The contrastive task lives with the joint embeddings it trains (``polymodal.joint.train``).
A new training mode is a config class (a :class:`RunConfig` with its own ``task``), a
:class:`Strategy` (its batches, its loss, its evaluation) and a builder registered with
:func:`~polymodal.training.tasks.register_task`; the loop gives it checkpoints, exact
resume, early stopping, logs and devices for free.

``train(load_config("configs/mosi_transcript_audio.yaml", ["optim.lr=3e-4"]))`` runs a whole
experiment.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from polymodal.training.config import (
    BalanceConfig,
    ContextTrainConfig,
    DataConfig,
    OptimConfig,
    RunConfig,
    SupervisedOptim,
    TrainConfig,
    load_config,
)
from polymodal.training.loop import Callback, LoopState, Strategy, Trainer, TrainResult
from polymodal.training.schedule import WarmupCosine, build_scheduler
from polymodal.training.seed import seed_everything
from polymodal.training.tasks import build_strategy, register_task


def train(
    cfg: RunConfig,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    *,
    overwrite: bool = False,
) -> TrainResult:
    """Build ``cfg``'s data and model for its task, train on the one loop, test once.

    A run never overwrites an earlier one: when ``cfg.run_dir`` already holds a run, this
    one goes to ``<run_dir>-2`` (``-3``, ...; :attr:`TrainResult.run_dir` says where, and
    ``<run_dir>.latest`` names the newest; :mod:`polymodal.training.rundir`).

    Args:
        cfg: any run config (:func:`load_config` returns the one its file's ``task`` names).
        resume: continue the run in ``cfg.run_dir`` from its last checkpoint.
        callbacks: hooks called during training (:class:`Callback`).
        overwrite: replace the run in ``cfg.run_dir`` instead of keeping it.

    Each epoch is logged (``polymodal`` logger); with no logging configured, on stderr
    (:func:`polymodal.progress.show_library_logs`).

    Under ``torchrun`` (``RANK``, ``WORLD_SIZE``... in the environment) every process calls
    this: the run trains data-parallel over all of them and only rank 0 logs and writes
    (:mod:`polymodal.training.distributed`); the process group is started here and shut
    down on return.
    """
    from polymodal.progress import show_library_logs
    from polymodal.training import distributed

    show_library_logs()
    if not distributed.env_info().is_main:  # one copy of the run's log lines: rank 0's
        logging.getLogger("polymodal").setLevel(logging.WARNING)
    distributed.init_distributed(cfg.device)
    ok = False
    try:
        result = Trainer(cfg, build_strategy(cfg), callbacks).fit(
            resume=resume, overwrite=overwrite
        )
        ok = True
    finally:
        distributed.shutdown(ok)
    return result


__all__ = [
    "BalanceConfig",
    "Callback",
    "ContextTrainConfig",
    "DataConfig",
    "LoopState",
    "OptimConfig",
    "RunConfig",
    "Strategy",
    "SupervisedOptim",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "WarmupCosine",
    "build_scheduler",
    "build_strategy",
    "load_config",
    "register_task",
    "seed_everything",
    "train",
]
