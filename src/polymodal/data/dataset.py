"""The data-set interface every built-in loader and the manifest reader implement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from polymodal.data.collate import Collator
from polymodal.data.modality import Schema
from polymodal.data.sample import Batch, Sample


class MultimodalDataset(Dataset[Sample]):
    """A map-style data set of :class:`Sample` with a :class:`Schema`.

    Subclasses implement ``__len__``, ``__getitem__`` (decoding lazily) and, cheaply
    and without decoding, ``targets()`` and ``groups()``.  ``groups()`` names the unit
    a split must not cut through (speaker, subject, video); validation sets are carved
    from train by group (see :func:`polymodal.data.splits.group_split`).
    """

    schema: Schema
    name: str = "dataset"
    split: str = "all"

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def targets(self) -> list[Any]:
        """The target of every example, in order, without decoding the modalities."""
        return [self[i].target for i in range(len(self))]

    def groups(self) -> list[str]:
        """The split group of every example (speaker, subject, video); ids by default."""
        return [self[i].id for i in range(len(self))]

    def class_counts(self) -> dict[str, int]:
        """Examples per class name in class-index order; empty unless the task is classification."""
        names = self.schema.target.class_names
        if self.schema.target.task != "classification":
            return {}
        counts = Counter(int(t) for t in self.targets() if t is not None)
        out: dict[str, int] = {}
        for k in sorted(counts):
            out[names[k] if names and k < len(names) else str(k)] = counts[k]
        return out

    def collator(self) -> Collator:
        return Collator(self.schema)

    def subset(self, indices: Sequence[int]) -> SubsetDataset:
        return SubsetDataset(self, list(indices))

    def loader(
        self,
        batch_size: int = 32,
        shuffle: bool = False,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> DataLoader[Sample]:
        """A :class:`DataLoader` yielding :class:`Batch` (seeded shuffling)."""
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            self,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            collate_fn=self.collator(),
            generator=gen,
            drop_last=drop_last,
            persistent_workers=num_workers > 0,
            **kwargs,
        )

    def batch(self, indices: Sequence[int]) -> Batch:
        """Decode and collate the examples at ``indices``."""
        return self.collator()([self[i] for i in indices])


class SubsetDataset(MultimodalDataset):
    """The examples of ``base`` at ``indices``, keeping its schema, targets and groups."""

    def __init__(self, base: MultimodalDataset, indices: list[int]) -> None:
        n = len(base)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"Subset indices {bad[:5]} out of range for a data set of {n}")
        self.base = base
        self.indices = indices
        self.schema = base.schema
        self.name = base.name
        self.split = base.split

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.base[self.indices[index]]

    def targets(self) -> list[Any]:
        t = self.base.targets()
        return [t[i] for i in self.indices]

    def groups(self) -> list[str]:
        g = self.base.groups()
        return [g[i] for i in self.indices]
