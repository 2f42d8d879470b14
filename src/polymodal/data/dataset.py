"""The data-set interface every built-in loader and the manifest reader implement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from polymodal.data.collate import Collator
from polymodal.data.modality import Schema
from polymodal.data.sample import Batch, Sample


@dataclass(frozen=True)
class TextRow:
    """One text of one example: what joint training, embedding and search index.

    Attributes:
        id: ``<example id>`` for an example's one text, ``<example id>#<k>`` for its k-th
            caption (see :func:`caption_row_id`).
        text: the text.
        example: the index of its example in the data set.
    """

    id: str
    text: str
    example: int


def caption_row_id(example_id: str, k: int) -> str:
    """The row id of caption ``k`` of an example that lists several: ``<example id>#<k>``."""
    return f"{example_id}#{k}"


def sample_text_rows(sample: Sample, modality: str, index: int = 0) -> list[TextRow]:
    """The captions-to-rows convention, in one place.

    An example whose ``meta["captions"]`` lists several texts (Flickr8k's five captions per
    image) gives one row per caption, ids ``<example id>#<k>``; any other example gives one
    row, its ``modality`` text, id ``<example id>``; an example missing ``modality`` gives
    none.

    Args:
        sample: the decoded example.
        modality: a text modality of the data set.
        index: the example's index in its data set (recorded in each row).
    """
    captions = sample.meta.get("captions")
    if isinstance(captions, list) and captions:
        return [
            TextRow(caption_row_id(sample.id, k), str(t), index) for k, t in enumerate(captions)
        ]
    value = sample.modalities.get(modality)
    return [] if value is None else [TextRow(sample.id, str(value), index)]


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

    def ids(self) -> list[str]:
        """The id of every example, in order (decodes each example unless overridden)."""
        return [self[i].id for i in range(len(self))]

    def text_rows(self, modality: str, count: int | None = None) -> list[TextRow]:
        """The text rows of the first ``count`` examples (all when ``None``) for ``modality``.

        One row per caption when an example lists several (see :func:`sample_text_rows`);
        decodes each example unless a data set overrides it with a cheaper reading.
        """
        n = len(self) if count is None else min(count, len(self))
        return [r for i in range(n) for r in sample_text_rows(self[i], modality, i)]

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

    def ids(self) -> list[str]:
        ids = self.base.ids()
        return [ids[i] for i in self.indices]

    def videos(self) -> dict[str, list[int]] | None:
        """The base's ``videos()`` (each sequence's examples in order) restricted to this
        subset, as positions in it; ``None`` when the base has no ``videos()``."""
        videos_fn = getattr(self.base, "videos", None)
        if not callable(videos_fn):
            return None
        position = {b: k for k, b in enumerate(self.indices)}
        out: dict[str, list[int]] = {}
        for video, idx in videos_fn().items():
            chosen = [position[i] for i in idx if i in position]
            if chosen:
                out[video] = chosen
        return out
