"""Collate :class:`Sample` lists into a :class:`Batch` with presence masks and padding."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from polymodal.data.modality import ModalityKind, ModalitySpec, Schema
from polymodal.data.sample import Batch, ModalityBatch, Sample


def _as_tensor(value: object, spec: ModalitySpec, sample_id: str) -> Tensor:
    if isinstance(value, Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"Sample {sample_id!r}, modality {spec.name!r}: expected a tensor-like value for "
                f"kind {spec.kind.value!r}, got {type(value).__name__}"
            ) from e
    if t.is_floating_point() or t.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        t = t.float() if t.dtype != torch.float32 else t
    return t


def _expected_ndim(spec: ModalitySpec) -> int | None:
    k = spec.kind
    if k is ModalityKind.IMAGE:
        return 3
    if k is ModalityKind.AUDIO:
        return 1
    if k is ModalityKind.VIDEO:
        return 4
    if k is ModalityKind.TIMESERIES:
        return 2
    if k is ModalityKind.TABULAR:
        return 1
    if k is ModalityKind.FEATURES:
        return 2 if spec.sequence else 1
    return None


def _collate_modality(spec: ModalitySpec, samples: Sequence[Sample]) -> ModalityBatch:
    vals = [s.modalities.get(spec.name) for s in samples]
    present = torch.tensor([v is not None for v in vals], dtype=torch.bool)
    b = len(samples)

    if spec.kind is ModalityKind.TEXT:
        texts: list[str] = []
        for s, v in zip(samples, vals, strict=True):
            if v is not None and not isinstance(v, str):
                raise TypeError(
                    f"Sample {s.id!r}, modality {spec.name!r}: text must be a str, "
                    f"got {type(v).__name__}"
                )
            texts.append(v if isinstance(v, str) else "")
        return ModalityBatch(texts, present)

    ndim = _expected_ndim(spec)
    tensors: list[Tensor | None] = []
    for s, v in zip(samples, vals, strict=True):
        if v is None:
            tensors.append(None)
            continue
        t = _as_tensor(v, spec, s.id)
        if ndim is not None and t.dim() != ndim:
            raise ValueError(
                f"Sample {s.id!r}, modality {spec.name!r} (kind {spec.kind.value!r}): expected "
                f"{ndim} dims, got shape {tuple(t.shape)}. Check the decoder or the schema."
            )
        if not torch.isfinite(t).all():
            raise ValueError(
                f"Sample {s.id!r}, modality {spec.name!r}: contains NaN or inf. Clean the source "
                "file or mark the modality missing for this example."
            )
        tensors.append(t)

    real = [t for t in tensors if t is not None]
    if spec.is_sequence:
        step_shape: tuple[int, ...]
        if real:
            step_shape = tuple(real[0].shape[1:])
        elif spec.shape is not None:
            step_shape = spec.shape
        else:
            step_shape = ()
        for s, x in zip(samples, tensors, strict=True):
            if x is not None and tuple(x.shape[1:]) != step_shape:
                raise ValueError(
                    f"Sample {s.id!r}, modality {spec.name!r}: step shape {tuple(x.shape[1:])} "
                    f"differs from {step_shape} in the same batch; resize in the decoder."
                )
        lengths = torch.tensor([0 if x is None else x.shape[0] for x in tensors], dtype=torch.long)
        max_len = max(1, int(lengths.max()) if b else 1)
        values = torch.zeros((b, max_len, *step_shape), dtype=torch.float32)
        for i, x in enumerate(tensors):
            if x is not None and x.shape[0] > 0:
                values[i, : x.shape[0]] = x
        mask = torch.arange(max_len)[None, :] < lengths[:, None]
        stamps = None
        if any(spec.name in s.timestamps for s in samples):
            stamps = torch.zeros((b, max_len), dtype=torch.float32)
            for i, s in enumerate(samples):
                ts = s.timestamps.get(spec.name)
                if ts is not None and tensors[i] is not None:
                    n = min(int(ts.shape[0]), int(lengths[i]))
                    stamps[i, :n] = ts[:n].float()
        return ModalityBatch(values, present, lengths, mask, stamps)

    if real:
        shape = tuple(real[0].shape)
    elif spec.shape is not None:
        shape = spec.shape
    else:
        raise ValueError(
            f"Modality {spec.name!r} is missing in every example of the batch and its spec has no "
            "shape to zero-fill with; set ModalitySpec.shape."
        )
    for s, x in zip(samples, tensors, strict=True):
        if x is not None and tuple(x.shape) != shape:
            raise ValueError(
                f"Sample {s.id!r}, modality {spec.name!r}: shape {tuple(x.shape)} differs from "
                f"{shape} in the same batch; resize in the decoder."
            )
    values = torch.zeros((b, *shape), dtype=torch.float32)
    for i, x in enumerate(tensors):
        if x is not None:
            values[i] = x
    return ModalityBatch(values, present)


def _collate_target(samples: Sequence[Sample], schema: Schema) -> Tensor | None:
    targets = [s.target for s in samples]
    if all(t is None for t in targets):
        return None
    missing = [s.id for s in samples if s.target is None]
    if missing:
        raise ValueError(
            f"Examples {missing[:5]} have no target while others in the batch do; drop unlabelled "
            "examples or label them."
        )
    task = schema.target.task
    if task == "classification":
        return torch.tensor([int(t) for t in targets], dtype=torch.long)  # type: ignore[arg-type]
    if task == "regression":
        vals = [float(t) for t in targets]  # type: ignore[arg-type]
        bad = [s.id for s, v in zip(samples, vals, strict=True) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"Examples {bad[:5]} have a NaN/inf regression target.")
        return torch.tensor(vals, dtype=torch.float32)
    return torch.stack([torch.as_tensor(t, dtype=torch.float32) for t in targets])


def collate(samples: Sequence[Sample], schema: Schema) -> Batch:
    """Collate ``samples`` into a :class:`Batch` following ``schema``.

    Sequences are right-padded with zeros to the longest example; ``lengths`` and
    ``mask`` say which steps are real.  A missing modality (value ``None``) is
    zero-filled with ``present=False``; text missing is ``""``.
    """
    if not samples:
        raise ValueError("collate() got an empty list of samples")
    mods = {spec.name: _collate_modality(spec, samples) for spec in schema.modalities}
    return Batch(mods, _collate_target(samples, schema), [s.id for s in samples])


class Collator:
    """A picklable ``collate_fn`` for :class:`torch.utils.data.DataLoader` workers."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        return collate(samples, self.schema)
