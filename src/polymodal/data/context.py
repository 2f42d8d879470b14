"""A video-level view of a per-utterance data set, for models that read context.

:class:`VideoDataset` wraps a per-utterance :class:`~polymodal.data.dataset.MultimodalDataset`
(MOSI, or any data set with ``groups()``) and makes one example of each video: the indices
of its utterances, in the order they are spoken.  :meth:`VideoDataset.batch` collates a
few videos into a :class:`VideoBatch`:

* ``utterances``: one ordinary :class:`~polymodal.data.sample.Batch` of every utterance of
  those videos, video after video (N = sum of the video lengths), collated by the base data
  set's own collator, so any utterance-level model reads it unchanged and no padding
  utterance ever reaches an encoder or a fusion;
* ``lengths`` (V,) and ``mask`` (V, U): how the N utterances are laid out as V padded
  sequences of U = max length steps;
* ``target`` (V, U): the per-utterance labels, :data:`IGNORE_INDEX` at padding steps.

Why not one :class:`Sample` per video with per-utterance sequences as modalities: a
transcript modality would become a list of strings (no modality kind holds that), every
encoder would need a second sequence axis, and the per-example scalar targets of
:func:`~polymodal.data.collate.collate` would have to become padded sequences.  The flat
layout keeps every encoder and fusion as it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.sample import Batch
from polymodal.data.splits import group_split

#: The target of padding steps in :attr:`VideoBatch.target` (``F.cross_entropy`` ignores it).
IGNORE_INDEX = -100


@dataclass
class VideoBatch:
    """A batch of V videos, their N utterances flat in one utterance-level batch.

    Attributes:
        utterances: the N utterances, video after video, each video's in spoken order.
        lengths: (V,) long, utterances per video (>= 1); sums to N.
        mask: (V, U) bool, True at real utterances, U = ``lengths.max()``.
        target: (V, U) long labels, :data:`IGNORE_INDEX` at padding; ``None`` if unlabelled.
        videos: the V video ids.
    """

    utterances: Batch
    lengths: Tensor
    mask: Tensor
    target: Tensor | None
    videos: list[str]

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> VideoBatch:
        return VideoBatch(
            self.utterances.to(device, non_blocking),
            self.lengths.to(device),
            self.mask.to(device),
            None if self.target is None else self.target.to(device, non_blocking=non_blocking),
            list(self.videos),
        )


def pad_utterances(flat: Tensor, lengths: Tensor, fill: float | int = 0) -> Tensor:
    """Lay out ``flat`` rows, video after video, as padded per-video sequences.

    Shape:
        - flat: (N, *F), N = ``lengths.sum()``
        - lengths: (V,)
        - returns: (V, U, *F), U = ``lengths.max()``; ``fill`` at padding steps
    """
    n_total = int(lengths.sum())
    if flat.shape[0] != n_total:
        raise ValueError(
            f"pad_utterances: flat has {flat.shape[0]} rows but lengths sum to {n_total}; "
            "pass one row per utterance."
        )
    v, u = int(lengths.shape[0]), int(lengths.max()) if lengths.numel() else 0
    mask = torch.arange(u, device=lengths.device)[None, :] < lengths[:, None]  # (V, U)
    out = flat.new_full((v, u, *flat.shape[1:]), fill)
    out[mask] = flat  # row-major order of mask = video after video, step after step
    return out


class VideoDataset:
    """One example per video of a per-utterance data set.

    Args:
        base: the per-utterance data set; its examples keep their schema and collator.
        indices: the base examples to use (e.g. the training videos after carving out
            validation); ``None`` means all.  Only whole videos should be passed: each
            video keeps the utterances of it that are among ``indices``.

    Utterance order within a video: ``base.videos()`` when the base has it (MOSI orders
    ``<video>_<n>`` by ``n`` as a number; a subset keeps its base's order), else the order
    of the examples in ``base``.  Videos are the keys of ``base.videos()``, else
    ``base.groups()``; they appear in the order of their first utterance.
    """

    def __init__(self, base: MultimodalDataset, indices: Sequence[int] | None = None) -> None:
        if not isinstance(base, MultimodalDataset):
            raise TypeError(
                f"VideoDataset: base must be a polymodal MultimodalDataset, got "
                f"{type(base).__name__}."
            )
        n = len(base)
        keep = None if indices is None else {int(i) for i in indices}
        if keep is not None:
            bad = sorted(i for i in keep if not 0 <= i < n)
            if bad:
                raise IndexError(
                    f"VideoDataset: indices {bad[:5]} out of range for a base of {n} examples."
                )
        videos_fn = getattr(base, "videos", None)
        ordered: Mapping[str, list[int]] | None = videos_fn() if callable(videos_fn) else None
        if ordered is None:
            grouped: dict[str, list[int]] = {}
            for i, g in enumerate(base.groups()):
                grouped.setdefault(str(g), []).append(i)
            ordered = grouped
        self.base = base
        self.schema = base.schema
        self.name = base.name
        self.split = base.split
        self._videos: list[str] = []
        self._utterances: list[list[int]] = []
        for video, idx in ordered.items():
            chosen = [int(i) for i in idx if keep is None or int(i) in keep]
            if chosen:
                self._videos.append(str(video))
                self._utterances.append(chosen)
        if not self._videos:
            raise ValueError(
                f"VideoDataset: no utterance of {base.name!r} (split {base.split!r}) was "
                "selected; pass indices of at least one example."
            )

    def __len__(self) -> int:
        return len(self._videos)

    def __getitem__(self, index: int) -> list[int]:
        """The base indices of video ``index``'s utterances, in spoken order."""
        return list(self._utterances[index])

    def __iter__(self) -> Iterator[list[int]]:
        return (list(u) for u in self._utterances)

    @property
    def videos(self) -> list[str]:
        """The video ids, in order."""
        return list(self._videos)

    @property
    def num_utterances(self) -> int:
        return sum(len(u) for u in self._utterances)

    def utterance_indices(self) -> list[int]:
        """Every selected base index, video after video."""
        return [i for u in self._utterances for i in u]

    def subset(self, videos: Sequence[int]) -> VideoDataset:
        """The videos at positions ``videos`` (all their utterances)."""
        return VideoDataset(self.base, [i for v in videos for i in self._utterances[v]])

    def split_videos(
        self, val_fraction: float = 0.2, seed: int = 0
    ) -> tuple[VideoDataset, VideoDataset]:
        """``(train, val)`` with no video on both sides, as
        :func:`~polymodal.data.splits.group_split` carves them (same ``seed`` and
        ``val_fraction`` give the same videos as the utterance-level trainer's split)."""
        idx = self.utterance_indices()
        groups = self.base.groups()
        train_pos, val_pos = group_split([groups[i] for i in idx], val_fraction, seed)
        return (
            VideoDataset(self.base, [idx[p] for p in train_pos]),
            VideoDataset(self.base, [idx[p] for p in val_pos]),
        )

    def batch(self, videos: Sequence[int]) -> VideoBatch:
        """Collate the videos at positions ``videos`` into a :class:`VideoBatch`."""
        if len(videos) == 0:
            raise ValueError("VideoDataset.batch: got no videos; pass at least one position.")
        chosen = [self._utterances[v] for v in videos]
        flat = [i for u in chosen for i in u]
        utterances = self.base.batch(flat)  # (N, ...)
        lengths = torch.tensor([len(u) for u in chosen], dtype=torch.long)  # (V,)
        mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]  # (V, U)
        target = None
        if utterances.target is not None:
            if utterances.target.dim() != 1 or utterances.target.is_floating_point():
                raise ValueError(
                    f"VideoDataset: per-utterance targets must be class ids (N,) long; data "
                    f"set {self.name!r} has {self.schema.target.task} targets of shape "
                    f"{tuple(utterances.target.shape)}."
                )
            target = pad_utterances(utterances.target, lengths, IGNORE_INDEX)  # (V, U)
        return VideoBatch(utterances, lengths, mask, target, [self._videos[v] for v in videos])

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> Iterator[VideoBatch]:
        """:class:`VideoBatch` es of ``batch_size`` videos; a seeded permutation if ``shuffle``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (videos per batch), got {batch_size}.")
        order = list(range(len(self)))
        if shuffle:
            gen = torch.Generator().manual_seed(seed)
            order = torch.randperm(len(self), generator=gen).tolist()
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size])


__all__ = ["IGNORE_INDEX", "VideoBatch", "VideoDataset", "pad_utterances"]
