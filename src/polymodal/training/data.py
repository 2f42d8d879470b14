"""The data of a run: its splits as the config names them, and the seeded epoch order.

Validation is ``data.val_split`` when set, else carved from the training split *by group*
(:func:`~polymodal.data.splits.group_split`: speakers, subjects, videos), the way each
test split is held out, so no group is on both sides.  The test split is loaded up front
(a missing one fails before training) but evaluated once, at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.splits import group_split
from polymodal.training.config import DataConfig
from polymodal.training.distributed import DistInfo, shard


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` seeded by ``seed + epoch``, starting at position ``start``.

    Skipping the first ``start`` indices lets a run resumed in the middle of an epoch see
    exactly the batches the interrupted run had not seen yet.  :meth:`set_epoch` moves it
    to another epoch, so one data loader (and its worker processes) serves every epoch.
    """

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate ``epoch``'s permutation from position ``start`` from now on."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=gen)[self.start :].tolist())

    def __len__(self) -> int:
        return max(0, self.n - self.start)


class EpochBatches(Sampler[list[int]]):
    """The batches of one epoch, as lists of example indices: the permutation of
    :class:`EpochSampler` cut into ``batch_size`` batches, from batch ``start`` on.

    Under ``torchrun`` each rank takes its slice of every batch
    (:func:`~polymodal.training.distributed.shard`): ``batch_size`` is the global batch,
    and the ranks' slices of one epoch are disjoint (but for a last batch that does not
    divide, padded by wrapping).  In one process the batches are exactly those of a
    ``DataLoader(batch_size=batch_size, sampler=EpochSampler(...))``.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        epoch: int,
        start: int = 0,
        rank: DistInfo | None = None,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.start = epoch, start
        self.rank = DistInfo() if rank is None else rank

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Yield ``epoch``'s batches from batch ``start`` on from now on (one data loader,
        with its worker processes, serves every epoch)."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(
            self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)
        )
        for s in range(self.start * self.batch_size, self.n, self.batch_size):
            yield shard(perm[s : s + self.batch_size], self.rank).tolist()

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.batch_size) - self.start)


def split_loader(data: DataConfig) -> Callable[[str | None], MultimodalDataset]:
    """A function from a split name to that split of ``data``'s data set or manifest."""
    if data.dataset is not None:
        from polymodal.data.datasets import load_dataset

        name = data.dataset

        def load_builtin(split: str | None) -> MultimodalDataset:
            return load_dataset(name, split=str(split), root=data.root, **data.options)

        return load_builtin

    if data.shards is not None:
        from polymodal.data.webshards import ShardDataset

        folder = data.shards

        def load_shards(split: str | None) -> MultimodalDataset:
            return ShardDataset(folder, split="all" if split is None else split)

        return load_shards

    from polymodal.data.manifest import ManifestDataset

    manifest = str(data.manifest)

    def load_manifest(split: str | None) -> MultimodalDataset:
        return ManifestDataset(manifest, schema=data.schema, split=split, **data.options)

    return load_manifest


def build_datasets(
    data: DataConfig, seed: int
) -> tuple[MultimodalDataset, MultimodalDataset, MultimodalDataset | None]:
    """``(train, val, test)`` of ``data`` (see the module docstring); the run's ``seed``
    seeds the validation carve unless ``data.split_seed`` is set."""
    load = split_loader(data)
    full = load(data.train_split)
    test = load(data.test_split) if data.test_split is not None else None
    if data.val_split is not None:
        return full, load(data.val_split), test
    train_idx, val_idx = group_split(full.groups(), data.val_fraction, data.carve_seed(seed))
    return full.subset(train_idx), full.subset(val_idx), test


def dataset_for_split(data: DataConfig, seed: int, split: str) -> MultimodalDataset:
    """One split as the run saw it: ``"train"`` and ``"val"`` (after carving validation
    out of train), ``"test"`` (``data.test_split``), or any other split name of the data."""
    load = split_loader(data)
    if split == "test":
        if data.test_split is None:
            raise ValueError(
                "The run's config has data.test_split=null, so it has no test split; "
                "pass --split val, or the name of a split of the data set."
            )
        return load(data.test_split)
    if split in ("train", "val"):
        if data.val_split is not None:
            return load(data.train_split if split == "train" else data.val_split)
        full = load(data.train_split)
        train_idx, val_idx = group_split(full.groups(), data.val_fraction, data.carve_seed(seed))
        return full.subset(train_idx if split == "train" else val_idx)
    return load(split)


__all__ = ["EpochBatches", "EpochSampler", "build_datasets", "dataset_for_split", "split_loader"]
