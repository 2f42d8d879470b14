"""Streaming a shard folder with the ``webdataset`` package (:class:`ShardStream`).

Who reads what, for ``world`` ranks with ``K`` DataLoader workers each:

1. ranks: with at least ``world`` shards, rank ``r`` reads shards ``r, r + world, ...``
   (of this epoch's shard order); with fewer, every rank reads every shard and keeps the
   examples whose position ``i`` has ``i % world == r``;
2. workers split a rank's part the same way: worker ``w`` reads the rank's shards
   ``w, w + K, ...`` when it has at least ``K``, else the examples whose position is ``w``
   modulo ``K`` (the position divided by ``world`` when step 1 split examples).

So the rank×worker parts are disjoint and together hold every example once, and what a
rank reads (``len(stream)``) does not depend on its worker count.  With ``shuffle_buffer
> 0`` each epoch permutes the shard order (seeded by ``seed + epoch``, the same on every
rank) and each worker shuffles its examples through a buffer of that many (seeded by
seed, epoch, rank and worker): the same seed and epoch give the same order.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from polymodal.data.collate import Collator
from polymodal.data.modality import Schema
from polymodal.data.sample import Sample
from polymodal.data.webshards.codec import (
    FORMAT_VERSION,
    ShardError,
    decode_chunk,
    read_index,
)
from polymodal.data.webshards.reader import REWRITE, check_shards, index_targets


def distributed_rank() -> tuple[int, int]:
    """``(rank, world size)``: torch.distributed's when initialised, else ``$RANK`` and
    ``$WORLD_SIZE``, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


Rule = list[tuple[int, int]]  # nested (part, parts) modulo filters on example positions


def _split(
    items: list[int], rule: Rule | None, part: int, parts: int
) -> tuple[list[int], Rule | None]:
    """Part ``part`` of ``parts`` disjoint parts of shards ``items`` (all their examples, or
    those ``rule`` keeps): whole shards when there are enough, else every ``parts``-th
    example."""
    if rule is None and len(items) >= parts:
        return items[part::parts], None
    if parts == 1:
        return items, rule
    return items, [*(rule or []), (part, parts)]


def _keep_at(first: int, rule: Rule, j: int) -> bool:
    """Whether the ``j``-th example of the chunk starting at ``first`` is in ``rule``'s part."""
    return _keep(first + j, rule)


def _keep(i: int, rule: Rule) -> bool:
    """Whether example position ``i`` is in the part ``rule`` describes."""
    for part, parts in rule:
        if i % parts != part:
            return False
        i //= parts
    return True


class ShardStream(IterableDataset[Sample]):
    """An iterable of the :class:`Sample` of a shard folder's split, read with webdataset.

    Yields what the source data set's ``__getitem__`` gave, so its :meth:`collator` and
    :func:`~polymodal.inference.data_loader` make the same batches; each DataLoader worker
    and rank reads its own part (see the module docstring).

    Args:
        path: the shard folder (``polymodal shards write ... -o DIR``).
        split: the split (``DIR/<split>.json``).
        shuffle_buffer: examples in the shuffle buffer; 0 reads in order (no shuffling).
        seed: seeds the shard order and the buffer, with the epoch (:meth:`set_epoch`).
        rank, world_size: this process's part (``None``: :func:`distributed_rank`).
        verify: check each shard's sha256 against the index first (once per process).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        verify: bool = True,
    ) -> None:
        super().__init__()
        if shuffle_buffer < 0:
            raise ValueError(f"The 'shuffle_buffer' parameter must be >= 0, got {shuffle_buffer}.")
        self.path = Path(path)
        self.index = read_index(self.path, split)
        self.schema = Schema.from_dict(self.index["schema"])
        self.name = str(self.index.get("dataset") or self.path.name)
        self.split = split
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0
        env_rank, env_world = distributed_rank()
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}.")
        self.paths = check_shards(self.path, self.index, verify)
        _webdataset()  # now: a missing package fails here, its import is not the 1st epoch's

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the next pass with ``seed + epoch``: call it before each epoch's
        ``iter()`` (persistent DataLoader workers keep the copy, and epoch, they started
        with)."""
        self.epoch = epoch

    def collator(self) -> Collator:
        return Collator(self.schema)

    def targets(self) -> list[Any]:
        """Every example's target in source order (from the index; no shard is read)."""
        return index_targets(self.index)

    def _order(self) -> list[int]:
        order = list(range(len(self.paths)))
        if self.shuffle_buffer > 0:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(order), generator=gen).tolist()
        return order

    def part(self, worker: int = 0, workers: int = 1) -> tuple[list[int], Rule | None]:
        """``(shard numbers, example filter)`` that ``worker`` of ``workers`` on this rank
        reads this epoch; the filter is ``None`` (whole shards) or a nested modulo rule."""
        shards, rule = _split(self._order(), None, self.rank, self.world_size)
        return _split(shards, rule, worker, workers)

    def __len__(self) -> int:
        """Examples this rank reads in one pass (over all its workers)."""
        shards, rule = self.part()
        if rule is None:
            return sum(self.index["shards"][s]["count"] for s in shards)
        return sum(_keep(i, rule) for i in range(self.index["count"]))

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.iter_part(worker, workers)

    def iter_part(self, worker: int = 0, workers: int = 1) -> Iterator[Sample]:
        """The examples ``worker`` of ``workers`` on this rank reads this epoch, in order
        (what ``__iter__`` yields in that DataLoader worker)."""
        shards, rule = self.part(worker, workers)
        samples = self._read(shards, rule)
        if self.shuffle_buffer > 0:
            rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}-{worker}")
            samples = _buffer_shuffle(samples, self.shuffle_buffer, rng)
        return samples

    def _read(self, shards: list[int], rule: Rule | None) -> Iterator[Sample]:
        group_by_keys, tar_file_expander, url_opener = _webdataset()
        for number in shards:
            path = self.paths[number]
            try:
                files = tar_file_expander(url_opener([{"url": str(path)}], bufsize=1 << 20))
                for members in group_by_keys(files, lcase=False):
                    key = str(members["__key__"])
                    where = f"{path}, chunk {key}"
                    if "chunk" not in members:
                        raise ShardError(
                            f"{where}: the tar member {key}.chunk is missing; the shard is "
                            f"damaged or not of format {FORMAT_VERSION}; {REWRITE}."
                        )
                    keep = None if rule is None else functools.partial(_keep_at, int(key), rule)
                    yield from decode_chunk(members["chunk"], self.schema, where, keep)
            except ShardError:
                raise
            except Exception as e:  # webdataset and tarfile raise many kinds
                raise ShardError(f"Shard {str(path)!r} is unreadable ({e!r}); {REWRITE}.") from e

    def loader(self, batch_size: int = 32, num_workers: int = 0, **kwargs: Any) -> DataLoader[Any]:
        """A :class:`DataLoader` of collated :class:`~polymodal.data.sample.Batch`."""
        return DataLoader(
            self,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=self.collator(),
            **kwargs,
        )


def _webdataset() -> tuple[Any, Any, Any]:
    """webdataset's ``group_by_keys``, ``tar_file_expander`` and ``url_opener``."""
    try:
        from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Streaming shards needs the webdataset package: pip install "
            "'polymodal[shards]' (or read them by index with ShardDataset)."
        ) from e
    return group_by_keys, tar_file_expander, url_opener


def _buffer_shuffle(samples: Iterator[Sample], size: int, rng: random.Random) -> Iterator[Sample]:
    """``samples`` shuffled through a buffer of ``size`` (each output drawn from it)."""
    buf: list[Sample] = []
    for s in samples:
        buf.append(s)
        if len(buf) >= size:
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


__all__ = ["ShardStream", "distributed_rank"]
