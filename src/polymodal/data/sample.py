"""Examples and batches.

A :class:`Sample` is one decoded example: a dict from modality name to its value
(``None`` when the modality is missing), an optional target and an id.  A
:class:`Batch` maps each modality name to a :class:`ModalityBatch`, whose
``present`` mask says which examples carry that modality; missing values are
zero-filled (empty strings for text), never an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

Value = Tensor | str | None


@dataclass
class Sample:
    """One decoded example.

    Attributes:
        id: a stable identifier (utterance id, file name, window id).
        modalities: modality name -> value laid out as in :class:`ModalityKind`'s table,
            or ``None`` when missing.
        target: int class, float value, or a (K,) multi-hot tensor; ``None`` if unlabelled.
        timestamps: optional per-step times in seconds, modality name -> (T,) tensor.
        meta: free-form metadata (speaker, subject, video, file paths).
    """

    id: str
    modalities: dict[str, Value]
    target: int | float | Tensor | None = None
    timestamps: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModalityBatch:
    """One modality of a batch.

    Attributes:
        values: (B, ...) tensor, or ``list[str]`` of length B for text.  See
            :class:`~polymodal.data.modality.ModalityKind` for each kind's layout.
        present: (B,) bool; False where the example lacks this modality (values zero-filled).
        lengths: (B,) long, valid steps per example, for sequences; 0 where missing.
        mask: (B, L) bool, True at valid (non-padding) steps, for sequences.
        timestamps: (B, L) float seconds, for sequences that carry them.
    """

    values: Tensor | list[str]
    present: Tensor
    lengths: Tensor | None = None
    mask: Tensor | None = None
    timestamps: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.present.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ModalityBatch:
        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        values = self.values
        if isinstance(values, Tensor):
            values = values.to(device, non_blocking=non_blocking)
        present = self.present.to(device, non_blocking=non_blocking)
        return ModalityBatch(values, present, mv(self.lengths), mv(self.mask), mv(self.timestamps))

    def index(self, idx: Tensor) -> ModalityBatch:
        """Rows ``idx`` (a (K,) long tensor) of this modality batch."""
        values = self.values
        values = values[idx] if isinstance(values, Tensor) else [values[i] for i in idx.tolist()]

        def sel(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[idx]

        return ModalityBatch(
            values, self.present[idx], sel(self.lengths), sel(self.mask), sel(self.timestamps)
        )

    def with_present(self, present: Tensor) -> ModalityBatch:
        """A copy whose ``present`` mask is ``present``; dropped rows are zero-filled."""
        present = present.to(self.present.device, torch.bool) & self.present
        values = self.values
        if isinstance(values, Tensor):
            keep = present.view(-1, *([1] * (values.dim() - 1))).to(values.dtype)
            values = values * keep
        else:
            values = [v if bool(p) else "" for v, p in zip(values, present.tolist(), strict=True)]
        lengths = None if self.lengths is None else self.lengths * present.long()
        mask = None if self.mask is None else self.mask & present[:, None]
        return replace(self, values=values, present=present, lengths=lengths, mask=mask)


@dataclass
class Batch:
    """A collated batch: modality name -> :class:`ModalityBatch`, plus targets and ids.

    Attributes:
        modalities: modality name -> :class:`ModalityBatch`, in schema order.
        target: (B,) long (classification), (B,) float (regression), (B, K) float
            (multilabel), or ``None``.
        ids: the B example ids.
    """

    modalities: dict[str, ModalityBatch]
    target: Tensor | None
    ids: list[str]

    def __getitem__(self, name: str) -> ModalityBatch:
        try:
            return self.modalities[name]
        except KeyError:
            raise KeyError(
                f"Modality {name!r} is not in this batch; it has: {', '.join(self.modalities)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.modalities

    def __iter__(self) -> Iterator[str]:
        return iter(self.modalities)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def batch_size(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            {k: v.to(device, non_blocking) for k, v in self.modalities.items()},
            None if self.target is None else self.target.to(device, non_blocking=non_blocking),
            list(self.ids),
        )

    def index(self, idx: Tensor) -> Batch:
        return Batch(
            {k: v.index(idx) for k, v in self.modalities.items()},
            None if self.target is None else self.target[idx],
            [self.ids[i] for i in idx.tolist()],
        )

    def pin_memory(self) -> Batch:
        """Every tensor in page-locked memory, so ``to(cuda, non_blocking=True)`` copies
        without making the host wait (what ``DataLoader(pin_memory=True)`` calls)."""

        def pin(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.pin_memory()

        def pin_mb(mb: ModalityBatch) -> ModalityBatch:
            vals = mb.values.pin_memory() if isinstance(mb.values, Tensor) else mb.values
            present = mb.present.pin_memory()
            return ModalityBatch(vals, present, pin(mb.lengths), pin(mb.mask), pin(mb.timestamps))

        mods = {k: pin_mb(v) for k, v in self.modalities.items()}
        return Batch(mods, pin(self.target), self.ids)
