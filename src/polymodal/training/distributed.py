"""Data-parallel training: one run over several processes, GPUs and machines (torchrun).

``torchrun --nproc_per_node N -m polymodal train CONFIG`` starts N copies of the same run;
each reads its place from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) in :func:`init_distributed`.  Without
those variables (or with ``WORLD_SIZE=1``) nothing here does anything: no process group,
the single-process loop exactly as before.

What the loop (:class:`~polymodal.training.loop.Trainer`) does with several ranks:

* **batches**: ``data.batch_size`` (``optim.batch_size`` for ``task: contrastive``) is the
  *global* batch.  Every rank draws the same epoch permutation (seeded by seed + epoch),
  cuts it into the same global batches as one process would, and takes its own slice of
  each (:func:`shard`): ``batch_size / world_size`` examples, disjoint across ranks.  A
  batch that does not divide is padded by wrapping around its own rows, as
  ``DistributedSampler`` pads an epoch, so every rank runs the same number of steps.
* **gradients**: the trainable module runs under ``DistributedDataParallel``
  (:class:`DataParallel`), which averages the ranks' gradients; each rank's loss is
  weighted by its share of the step's examples (``count * world_size / global count``), so
  the averaged gradient is the gradient of the mean loss over the global batch: the same
  step one process takes on the whole batch, up to the order of float additions.
* **evaluation**: rank 0 evaluates the whole validation (and, at the end, test) split and
  sends the metrics to the others (:func:`on_main`), so the metrics are exactly the
  single-process ones and every rank takes the same early-stopping decision.
* **files**: only rank 0 claims and locks the run folder (then tells the others which
  one), logs, shows progress and writes metrics, checkpoints and ``results.json``.
  Checkpoints hold the unwrapped module's weights, so ``evaluate`` and ``predict`` take
  them as they are; ``--resume`` loads ``checkpoints/last`` on every rank (several
  machines need the run folder on a shared file system for that).  The random states a
  checkpoint keeps are rank 0's, restored on every rank, and the data order depends only
  on seed and epoch: a resumed run ends bit for bit where an uninterrupted one does when
  the ranks draw alike (same seed, same-shaped shares; in ``task: context`` with dropout,
  videos of other lengths make rank 1 draw differently: it resumes validly, not bitwise).
* **callbacks**: every rank calls ``on_step_end`` (with its own share's loss) and
  ``on_epoch_end``; ``on_checkpoint`` only rank 0, the one that writes.
* **FSDP**: ``distributed.parallel=fsdp`` shards parameters, gradients and optimiser
  state instead of replicating them (:mod:`polymodal.training.fsdp`), same results.
* **not here**: ``optim.balance`` (one process only).  ``optim.all_positives``
  needs the same number of rows per anchor (Flickr8k's five captions), so shares are equal.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
from torch import Tensor, nn

from polymodal.device import resolve_device
from polymodal.losses.distributed import DistributedContext

if TYPE_CHECKING:
    from polymodal.training.config import RunConfig
    from polymodal.training.loop import Strategy

logger = logging.getLogger("polymodal.training")

#: How long a collective waits for the other ranks before failing (not hanging).
TIMEOUT = datetime.timedelta(minutes=30)

T = TypeVar("T")

_OWNED: list[bool] = []  # [True] while init_distributed's process group is up
_HOST_GROUP: list[Any] = []  # the gloo group of host values under NCCL


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel run.

    Attributes:
        rank: this process's rank (0-based) among all processes of all machines.
        world_size: the number of processes; 1 means a single-process run.
        local_rank: this process's rank on its machine (its GPU index).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        """Whether there is more than one process (a process group is up)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files and logs."""
        return self.rank == 0

    def context(self) -> DistributedContext:
        """The :class:`DistributedContext` a contrastive loss is built with."""
        return DistributedContext(self.rank, self.world_size)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"The environment variable {name}={value!r} must be an integer (torchrun sets it)."
        ) from None


def env_info() -> DistInfo:
    """The rank, world size and local rank that torchrun put in the environment."""
    return DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def current() -> DistInfo:
    """This process's place: from the process group when one is up, else single-process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return DistInfo()
    return DistInfo(
        torch.distributed.get_rank(), torch.distributed.get_world_size(), env_info().local_rank
    )


def is_main() -> bool:
    """Whether this process is rank 0 (also after the process group was shut down)."""
    return current().is_main and env_info().is_main


def rank_device(name: str, info: DistInfo) -> torch.device:
    """The device of this rank for config value ``device``.

    One process: :func:`~polymodal.device.resolve_device`.  Several: ``auto`` is
    ``cuda:LOCAL_RANK`` when CUDA is available (else CPU) and ``cuda`` is
    ``cuda:LOCAL_RANK``; ``cpu`` stays CPU; an explicit ``cuda:N`` is refused (every rank
    would share GPU N).
    """
    if not info.is_distributed:
        return resolve_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        resolve_device("cuda")  # fails with the usual message when there is no CUDA
        if info.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={info.local_rank} but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s); start at most that many "
                "processes per machine (torchrun --nproc_per_node)."
            )
        return torch.device("cuda", info.local_rank)
    if name.startswith("cuda:"):
        raise ValueError(
            f"device={name!r} puts every one of the {info.world_size} processes on one GPU; "
            "under torchrun use device=cuda (or auto): each process takes GPU LOCAL_RANK."
        )
    return resolve_device(name)


def init_distributed(device: str = "auto") -> DistInfo:
    """Start the process group torchrun's environment describes; return this rank's place.

    Without torchrun's variables (``WORLD_SIZE`` unset or 1) this does nothing and returns
    a single-process :class:`DistInfo`.  The backend is NCCL when this rank's device (see
    :func:`rank_device`) is a GPU, else gloo; a GPU rank sets its current CUDA device.
    A process group that is already up is used as it is.
    """
    info = env_info()
    if not info.is_distributed:
        return DistInfo()
    if torch.distributed.is_initialized():
        return current()
    dev = rank_device(device, info)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, timeout=TIMEOUT)
    _OWNED.append(True)
    _host_group()  # every rank makes it here, at the same call
    info = current()
    logger.info(
        "rank %d of %d (local rank %d) on %s, backend %s",
        info.rank,
        info.world_size,
        info.local_rank,
        dev,
        backend,
    )
    return info


def shutdown(ok: bool = True) -> None:
    """End the process group :func:`init_distributed` started (one started elsewhere is
    left up): a barrier first (``ok``) so no rank tears it down while another still talks
    to it; after an error, without waiting for the others."""
    if _OWNED and torch.distributed.is_initialized():
        if ok:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    _OWNED.clear()
    _HOST_GROUP.clear()


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if current().is_distributed:
        torch.distributed.barrier()


def _host_group() -> Any:
    """A gloo group for values that live on the host (example counts, metrics, folder
    names): exchanging them never waits for a GPU's queued work.  The default group when
    it is gloo already; made (by every rank at the same call) when it is NCCL."""
    if torch.distributed.get_backend() == "gloo":
        return None
    if not _HOST_GROUP:
        _HOST_GROUP.append(torch.distributed.new_group(backend="gloo"))
    return _HOST_GROUP[0]


def all_reduce_sum(values: list[float]) -> list[float]:
    """Host ``values`` summed elementwise over the ranks (as they are in one process)."""
    if not current().is_distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t, group=_host_group())
    return [float(v) for v in t.tolist()]


def reduce_loss_sum(total: Tensor, count: int) -> tuple[float, int]:
    """``(sum of total, sum of count)`` over the ranks of an epoch's summed training loss
    ``total`` (on this rank's device) and its examples (waits for the device)."""
    if not current().is_distributed:
        return float(total), count
    t = torch.stack([total.detach().double(), total.new_tensor(count, dtype=torch.float64)])
    torch.distributed.all_reduce(t)
    value, examples = t.tolist()
    return float(value), round(examples)


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (any picklable object; ``obj`` itself in one process)."""
    if not current().is_distributed:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0, group=_host_group())
    return box[0]  # type: ignore[return-value]


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only, its result sent to every rank (others wait meanwhile)."""
    value: Any = fn() if current().is_main else None
    return cast(T, broadcast(value))


def shard(rows: Tensor, info: DistInfo) -> Tensor:
    """This rank's slice of one global batch ``rows`` (the batch itself in one process).

    The batch is padded by wrapping around its own rows to a multiple of the world size,
    then cut into ``world_size`` equal, consecutive slices; rank ``r`` takes slice ``r``.

    Shape:
        rows: (B,) the global batch's example indices.
        output: (ceil(B / world_size),) this rank's indices.
    """
    world = info.world_size
    if world == 1:
        return rows
    per = -(-rows.numel() // world)  # ceil
    if rows.numel() == 0:
        raise ValueError("shard: an empty batch cannot be split between ranks.")
    padded = rows[torch.arange(per * world, device=rows.device) % rows.numel()]
    return padded[info.rank * per : (info.rank + 1) * per]


class _StepModule(nn.Module):
    """The trainable module, with a forward that is the strategy's training loss, so
    ``DistributedDataParallel`` sees every forward and backward of a step."""

    def __init__(self, trainable: nn.Module, loss: Callable[[Any], tuple[Tensor, int]]) -> None:
        super().__init__()
        self.trainable = trainable
        self._loss = loss

    def forward(self, batch: Any) -> tuple[Tensor, int]:
        return self._loss(batch)


@dataclass
class StepLoss:
    """One step's loss as the loop uses it.

    Attributes:
        loss: what ``backward()`` is called on: ``raw`` times this rank's share of the
            step's examples times the world size (``raw`` itself in one process).
        raw: the strategy's mean loss over this rank's examples.
        count: this rank's examples.
    """

    loss: Tensor
    raw: Tensor
    count: int


class DataParallel:
    """Runs a strategy's training loss, under ``DistributedDataParallel`` when there are
    several ranks (see the module docstring), or sharded by FSDP2 with
    ``distributed.parallel=fsdp`` (:mod:`polymodal.training.fsdp`); a plain call in one
    process.  With ``cfg.compile`` the model's forward is compiled first
    (:func:`~polymodal.training.compiled.compile_model`: in place, so checkpoints keep their
    keys; eager with a warning when inductor has no compiler here).

    The loop reads and writes the trained weights, optimiser state and metrics through it
    (:meth:`weights`, :meth:`optimizer_state`, :meth:`load_weights`, :meth:`on_main`):
    under FSDP they take every rank; otherwise they are the strategy's own.
    """

    def __init__(self, strategy: Strategy, info: DistInfo, cfg: RunConfig | None = None) -> None:
        self.strategy = strategy
        self.info = info
        self.ddp: nn.Module | None = None
        parallel = "ddp" if cfg is None else cfg.distributed.parallel
        self.sharded = info.is_distributed and parallel == "fsdp"
        if self.sharded and cfg is not None:
            _check_shardable(strategy, cfg)
        if cfg is not None and cfg.compile:
            from polymodal.training.compiled import compile_model

            compile_model(strategy.model, strategy.device)
        if self.sharded:
            from polymodal.training import fsdp

            precision = "fp32" if cfg is None else cfg.precision
            fsdp.shard(strategy.trainable(), strategy.device, precision)
        elif info.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            find_unused = True if cfg is None else cfg.distributed.find_unused
            # DDP broadcasts rank 0's parameters and buffers here: every rank starts equal
            self.ddp = DistributedDataParallel(
                _StepModule(strategy.trainable(), strategy.loss),
                find_unused_parameters=find_unused,
            )

    def __call__(self, batch: Any) -> StepLoss:
        if self.ddp is None and not self.sharded:
            loss, count = self.strategy.loss(batch)
            return StepLoss(loss, loss, count)
        # FSDP: the loss calls the sharded model's forward, whose hooks gather and reduce
        loss, count = self.strategy.loss(batch) if self.ddp is None else self.ddp(batch)
        (examples,) = all_reduce_sum([float(count)])  # host numbers: no wait for the GPU
        share = count * self.info.world_size / max(examples, 1.0)
        return StepLoss(loss * share, loss, count)

    def weights(self) -> dict[str, Tensor]:
        """The weights a checkpoint stores, on rank 0 (``{}`` on the others; under FSDP
        every rank must call it: it gathers the slices)."""
        if not self.sharded:
            return self.strategy.weights() if self.info.is_main else {}
        from polymodal.training import fsdp

        return fsdp.full_weights(self.strategy.trainable())

    def load_weights(self, weights: dict[str, Tensor], source: str) -> None:
        """Load checkpoint ``weights`` into the model (under FSDP: on every rank)."""
        if not self.sharded:
            self.strategy.load_weights(weights, source)
            return
        from polymodal.training import fsdp

        fsdp.load_full_weights(self.strategy.trainable(), weights, source)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``optimizer.state_dict()`` on rank 0, ``{}`` on the others (under FSDP: the full
        one, gathered; every rank must call it)."""
        if not self.sharded:
            return optimizer.state_dict() if self.info.is_main else {}
        from polymodal.training import fsdp

        return fsdp.full_optimizer_state(self.strategy.trainable(), optimizer)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: Any) -> None:
        """Load a saved ``optimizer.state_dict()`` (of a run of any kind)."""
        if not self.sharded:
            optimizer.load_state_dict(state)
            return
        from polymodal.training import fsdp

        fsdp.load_full_optimizer_state(self.strategy.trainable(), optimizer, state)

    def on_main(self, fn: Callable[[], T]) -> T:
        """:func:`on_main`; under FSDP every rank runs ``fn`` (an evaluation: the forward
        gathers every rank's slice) and rank 0's result is returned on all; the others log
        nothing meanwhile (rank 0 says what the evaluation has to say)."""
        if not self.sharded:
            return on_main(fn)
        if self.info.is_main:
            return broadcast(fn())
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            fn()
        finally:
            logging.disable(previous)
        return broadcast(cast(T, None))


def _check_shardable(strategy: Strategy, cfg: RunConfig) -> None:
    if not getattr(strategy, "shardable", False):
        raise ValueError(
            f"distributed.parallel=fsdp shards a model whose forward the training loss and the "
            f"evaluation call (task: supervised); task: {cfg.task} trains through other "
            "methods. Use distributed.parallel=ddp."
        )


__all__ = [
    "DataParallel",
    "DistInfo",
    "StepLoss",
    "all_reduce_sum",
    "barrier",
    "broadcast",
    "current",
    "env_info",
    "init_distributed",
    "is_main",
    "on_main",
    "rank_device",
    "reduce_loss_sum",
    "shard",
    "shutdown",
]
