"""Perturbations of one modality of a collated, decoded batch, for robustness curves.

Every perturbation is a pure function ``(batch, severity, generator, **kw) -> batch``
applied to a :class:`~polymodal.data.sample.ModalityBatch` *before* the encoders:

* ``severity`` in [0, 1]; 0 returns the input batch itself (the same tensors), 1 is the
  strongest corruption; the damage grows with severity.
* All randomness comes from ``generator`` (a CPU :class:`torch.Generator`), never from the
  global RNG, so a seed reproduces a corruption exactly.  Random draws do not depend on
  the severity, only their thresholds do, so one seed gives nested corruptions across
  levels (common random numbers: curves over severity are smooth).
* The input is never modified; padding steps and absent examples are left as they were
  (zero), and values are clamped to the range of the clean batch where noise could leave it.

==================  ============================  ==============================================
name                kinds                         what severity ``s`` does
==================  ============================  ==============================================
``char_swap``       text                          swaps each character with the next, prob. ``s``
``typo``            text                          replaces/inserts/deletes a character, prob. ``s``
``word_drop``       text                          drops each word with probability ``s``
``gaussian_noise``  image, video, timeseries,     adds N(0, (s * std)^2), std per channel
                    tabular, features             (last axis; axis -3 for images/frames) over
                                                  the batch's valid entries
``blur``            image, video                  Gaussian blur, sigma = s * max_sigma
``occlusion``       image, video                  a square of side sqrt(s) * min(H, W) set to
                                                  ``fill`` (so a fraction s of the area)
``contrast``        image, video                  blends each image toward its mean by ``s``
``white_noise``     audio                         white noise at SNR -10 dB - 20 log10(s)
``time_dropout``    audio                         zeroes random chunks covering a fraction s
                                                  of the valid samples
``step_drop``       timeseries, video             drops each step with prob. ``s``: holds the
                                                  previous step (video: repeats the frame) or
                                                  zeroes it (``mode="zero"``)
``time_shift``      timeseries                    clock offset of up to ``s * max_shift`` steps
                                                  and drift of up to ``s * max_drift``
``feature_drop``    tabular, features             zeroes each feature with probability ``s``
``missing``         every kind                    marks an example absent with probability ``s``
==================  ============================  ==============================================

:data:`PERTURBATIONS` is the registry (name -> function, with the kinds it accepts);
:func:`perturb` checks the name, kind and severity and applies one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import wraps
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.modality import ModalityKind, Schema
from polymodal.data.sample import Batch, ModalityBatch
from polymodal.errors import did_you_mean, unknown_name_error
from polymodal.registry import Registry


class Perturbation(Protocol):
    """The signature every registered perturbation has."""

    def __call__(
        self, batch: ModalityBatch, severity: float, generator: torch.Generator, **kw: Any
    ) -> ModalityBatch: ...


PERTURBATIONS: Registry[ModalityBatch] = Registry("perturbation")

ALL_KINDS = tuple(k.value for k in ModalityKind)
_PIXELS = ("image", "video")
_VECTORS = ("tabular", "features")


def check_severity(severity: float) -> float:
    """``severity`` as a float, or a ``ValueError`` unless it is a number in [0, 1]."""
    if (
        isinstance(severity, bool)
        or not isinstance(severity, int | float)
        or not 0.0 <= float(severity) <= 1.0
    ):
        raise ValueError(
            f"The 'severity' parameter must be a float in [0, 1]. Got {severity!r} instead."
        )
    return float(severity)


def _perturbation(name: str, description: str, kinds: tuple[str, ...]) -> Callable[[Any], Any]:
    """Register ``fn`` under ``name``; severity 0 returns the batch untouched."""

    def deco(fn: Callable[..., ModalityBatch]) -> Callable[..., ModalityBatch]:
        @wraps(fn)
        def wrapper(
            batch: ModalityBatch, severity: float, generator: torch.Generator, **kw: Any
        ) -> ModalityBatch:
            severity = check_severity(severity)
            if severity == 0.0:
                return batch
            return fn(batch, severity, generator, **kw)

        PERTURBATIONS.register(name, description, kind=kinds)(wrapper)
        return wrapper

    return deco


def perturbations_for(kind: str | ModalityKind) -> list[str]:
    """The names of the registered perturbations that accept modality ``kind``, sorted."""
    kind = ModalityKind.parse(kind).value
    return [e.name for e in PERTURBATIONS if kind in e.kinds]


def perturb(
    batch: ModalityBatch,
    name: str,
    kind: str | ModalityKind,
    severity: float,
    generator: torch.Generator,
    **kw: Any,
) -> ModalityBatch:
    """Apply perturbation ``name`` to ``batch``, a modality of kind ``kind``.

    Raises:
        ValueError: an unknown ``name``, a ``name`` that does not accept ``kind``, or a
            ``severity`` outside [0, 1].
    """
    entry = PERTURBATIONS.get(name)
    kind = ModalityKind.parse(kind)
    if kind.value not in entry.kinds:
        valid = perturbations_for(kind)
        raise ValueError(
            f"The 'perturbation' parameter must be one of {valid} for a modality of kind "
            f"{kind.value!r}. Got {name!r} instead, which applies to: {', '.join(entry.kinds)}."
            + did_you_mean(name, valid)
        )
    return entry.builder(batch, severity, generator, **kw)


def perturb_batch(
    batch: Batch,
    schema: Schema,
    modality: str,
    name: str,
    severity: float,
    generator: torch.Generator,
    **kw: Any,
) -> Batch:
    """``batch`` with modality ``modality`` (of ``schema``) perturbed by ``name``; the other
    modalities, targets and ids are shared with ``batch``."""
    kind = schema[modality].kind
    mods = dict(batch.modalities)
    mods[modality] = perturb(batch[modality], name, kind, severity, generator, **kw)
    return Batch(mods, batch.target, batch.ids)


def drop_modalities(batch: Batch, modalities: Sequence[str]) -> Batch:
    """``batch`` with every example lacking ``modalities``: the ``missing`` perturbation at
    severity 1 (``present`` all False, values zero-filled)."""
    mods = dict(batch.modalities)
    for name in modalities:
        if name not in mods:
            raise unknown_name_error("modality", name, list(mods))
        mods[name] = missing(mods[name], 1.0, torch.Generator())
    return Batch(mods, batch.target, batch.ids)


# --------------------------------------------------------------------------- helpers


def _tensor(batch: ModalityBatch, name: str) -> Tensor:
    if not isinstance(batch.values, Tensor):
        raise TypeError(
            f"Perturbation {name!r} needs tensor values; got {type(batch.values).__name__}."
        )
    return batch.values


def _rand(generator: torch.Generator, *shape: int, like: Tensor) -> Tensor:
    """Uniform [0, 1) draws on the CPU generator, moved to ``like``'s device."""
    return torch.rand(shape, generator=generator).to(like.device)


def _randn(generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(like.shape, generator=generator).to(like.device, like.dtype)


def _valid(batch: ModalityBatch, values: Tensor) -> Tensor:
    """Bool mask broadcastable to ``values``: present examples and valid (non-padding) steps.

    Shape:
        values (B, ...) -> (B, 1, ...) or (B, L, 1, ...) with ``values.dim()`` axes.
    """
    valid = batch.present.to(values.device, torch.bool).view(-1, *([1] * (values.dim() - 1)))
    if batch.mask is not None and values.dim() >= 2 and batch.mask.shape == values.shape[:2]:
        step = batch.mask.to(values.device, torch.bool)
        valid = valid & step.view(*step.shape, *([1] * (values.dim() - 2)))
    return valid


def _finish(batch: ModalityBatch, old: Tensor, new: Tensor, clamp: bool = True) -> ModalityBatch:
    """``new`` at valid entries, ``old`` elsewhere, clamped to ``old``'s range at valid ones."""
    valid = _valid(batch, old)
    if clamp and bool(valid.any()):
        ref = old.masked_select(valid.expand_as(old))
        new = new.clamp(float(ref.min()), float(ref.max()))
    return replace(batch, values=torch.where(valid, new.to(old.dtype), old))


def _channel_std(batch: ModalityBatch, x: Tensor, axis: int) -> Tensor:
    """Std of each channel (``axis``) over the valid entries, shaped to broadcast to ``x``."""
    valid = _valid(batch, x).expand_as(x).to(x.dtype)
    axis = axis % x.dim()
    dims = [d for d in range(x.dim()) if d != axis]
    n = valid.sum(dims, keepdim=True).clamp_min(1)
    mean = (x * valid).sum(dims, keepdim=True) / n
    var = (((x - mean) * valid) ** 2).sum(dims, keepdim=True) / n
    return var.sqrt()


def _frames(x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """(B, 3, H, W) images or (B, T, 3, H, W) videos as (N, 3, H, W) and the way back."""
    if x.dim() == 5:
        b, t = x.shape[:2]
        return x.flatten(0, 1), lambda y: y.view(b, t, *y.shape[1:])
    if x.dim() != 4:
        raise ValueError(
            f"Image perturbations need (B, 3, H, W) or (B, T, 3, H, W) values; got shape "
            f"{tuple(x.shape)}."
        )
    return x, lambda y: y


# --------------------------------------------------------------------------- text


def _perturb_texts(
    batch: ModalityBatch, generator: torch.Generator, edit: Callable[[str], str]
) -> ModalityBatch:
    values = batch.values
    if not isinstance(values, list):
        raise TypeError(f"Text perturbations need list[str] values; got {type(values).__name__}.")
    present = batch.present.tolist()
    out = [edit(v) if p else v for v, p in zip(values, present, strict=True)]
    return replace(batch, values=out)


@_perturbation("char_swap", "swap adjacent characters (rate = severity)", ("text",))
def char_swap(batch: ModalityBatch, severity: float, generator: torch.Generator) -> ModalityBatch:
    """Swap each character with the next one with probability ``severity``."""

    def edit(text: str) -> str:
        chars = list(text)
        draws = torch.rand(len(chars), generator=generator).tolist()
        i = 0
        while i < len(chars) - 1:
            if draws[i] < severity:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
                i += 2
            else:
                i += 1
        return "".join(chars)

    return _perturb_texts(batch, generator, edit)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@_perturbation("typo", "replace, insert or delete characters (rate = severity)", ("text",))
def typo(batch: ModalityBatch, severity: float, generator: torch.Generator) -> ModalityBatch:
    """Edit each character with probability ``severity``: a random lowercase letter
    replaces it, is inserted after it, or it is deleted (one third each)."""

    def edit(text: str) -> str:
        n = len(text)
        hit = torch.rand(n, generator=generator).tolist()
        op = torch.randint(0, 3, (n,), generator=generator).tolist()
        letter = torch.randint(0, len(_LETTERS), (n,), generator=generator).tolist()
        out: list[str] = []
        for c, h, o, k in zip(text, hit, op, letter, strict=True):
            if h >= severity:
                out.append(c)
            elif o == 0:
                out.append(_LETTERS[k])
            elif o == 1:
                out += [c, _LETTERS[k]]
        return "".join(out)

    return _perturb_texts(batch, generator, edit)


@_perturbation("word_drop", "drop words (probability = severity)", ("text",))
def word_drop(batch: ModalityBatch, severity: float, generator: torch.Generator) -> ModalityBatch:
    """Drop each whitespace-separated word with probability ``severity``."""

    def edit(text: str) -> str:
        words = text.split()
        draws = torch.rand(len(words), generator=generator).tolist()
        return " ".join(w for w, d in zip(words, draws, strict=True) if d >= severity)

    return _perturb_texts(batch, generator, edit)


# --------------------------------------------------------------------------- noise, drops


@_perturbation(
    "gaussian_noise",
    "Gaussian noise, std = severity x each channel's std",
    ("image", "video", "timeseries", "tabular", "features"),
)
def gaussian_noise(
    batch: ModalityBatch, severity: float, generator: torch.Generator
) -> ModalityBatch:
    """Add N(0, (severity * std)^2) noise, ``std`` of each channel over the batch's valid
    entries (images and frames: each colour channel, axis -3; sequences and vectors: each
    channel or feature, the last axis).

    Shape:
        values: (B, 3, H, W), (B, T, 3, H, W), (B, T, C), (B, D) or (B, T, D); unchanged.
    """
    x = _tensor(batch, "gaussian_noise")
    std = _channel_std(batch, x, -3 if x.dim() >= 4 else -1)
    return _finish(batch, x, x + severity * std * _randn(generator, x), clamp=x.dim() >= 4)


@_perturbation("feature_drop", "zero features (probability = severity)", _VECTORS)
def feature_drop(
    batch: ModalityBatch, severity: float, generator: torch.Generator
) -> ModalityBatch:
    """Zero each feature of each example with probability ``severity`` (every step of a
    sequence loses the same features).

    Shape:
        values: (B, D) or (B, T, D); unchanged.
    """
    x = _tensor(batch, "feature_drop")
    b, d = x.shape[0], x.shape[-1]
    keep = (_rand(generator, b, d, like=x) >= severity).to(x.dtype)  # (B, D)
    keep = keep.view(b, *([1] * (x.dim() - 2)), d)
    return _finish(batch, x, x * keep, clamp=False)


@_perturbation("missing", "mark examples absent (probability = severity)", ALL_KINDS)
def missing(batch: ModalityBatch, severity: float, generator: torch.Generator) -> ModalityBatch:
    """Mark each example absent with probability ``severity`` through ``present`` (values
    zero-filled, empty strings for text, lengths 0); severity 1 removes the modality."""
    keep = torch.rand(batch.batch_size, generator=generator) >= severity
    return batch.with_present(keep)


# --------------------------------------------------------------------------- images


def _gaussian_kernel(sigma: float, radius: int) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@_perturbation("blur", "Gaussian blur, sigma = severity x max_sigma", _PIXELS)
def blur(
    batch: ModalityBatch,
    severity: float,
    generator: torch.Generator,
    max_sigma: float | None = None,
) -> ModalityBatch:
    """Separable Gaussian blur with ``sigma = severity * max_sigma`` (default
    ``max_sigma = min(H, W) / 10``), radius ``ceil(3 sigma)``, reflected borders.

    Shape:
        values: (B, 3, H, W) or (B, T, 3, H, W); unchanged.
    """
    x = _tensor(batch, "blur")
    frames, back = _frames(x)  # (N, C, H, W)
    _, c, h, w = frames.shape
    sigma = severity * (min(h, w) / 10 if max_sigma is None else max_sigma)
    radius = min(math.ceil(3 * sigma), h - 1, w - 1)
    if sigma <= 0 or radius < 1:
        return batch
    k = _gaussian_kernel(sigma, radius).to(x.device, frames.dtype)
    y = F.pad(frames, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return _finish(batch, x, back(y))


@_perturbation("occlusion", "a square patch covering a fraction severity of the area", _PIXELS)
def occlusion(
    batch: ModalityBatch, severity: float, generator: torch.Generator, fill: float = 0.0
) -> ModalityBatch:
    """Set a square of side ``round(sqrt(severity) * min(H, W))`` at a random position of
    each image (each frame) to ``fill`` (0: the mean colour of ImageNet-normalised images).

    Shape:
        values: (B, 3, H, W) or (B, T, 3, H, W); unchanged.
    """
    x = _tensor(batch, "occlusion")
    frames, back = _frames(x)
    n, _, h, w = frames.shape
    side = round(math.sqrt(severity) * min(h, w))
    top = (_rand(generator, n, like=frames) * (h - side + 1)).long().clamp_max(h - side)
    left = (_rand(generator, n, like=frames) * (w - side + 1)).long().clamp_max(w - side)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)  # (N, W)
    patch = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (N, 1, H, W)
    y = frames.masked_fill(patch, fill)
    return _finish(batch, x, back(y), clamp=False)


@_perturbation("contrast", "blend each image toward its mean by severity", _PIXELS)
def contrast(batch: ModalityBatch, severity: float, generator: torch.Generator) -> ModalityBatch:
    """``mean + (1 - severity) * (x - mean)``, ``mean`` over each image (frame); severity
    1 leaves a flat image of its mean.

    Shape:
        values: (B, 3, H, W) or (B, T, 3, H, W); unchanged.
    """
    x = _tensor(batch, "contrast")
    frames, back = _frames(x)
    mean = frames.mean((1, 2, 3), keepdim=True)
    return _finish(batch, x, back(mean + (1.0 - severity) * (frames - mean)))


# --------------------------------------------------------------------------- audio


def _lengths(batch: ModalityBatch, x: Tensor) -> list[int]:
    if batch.lengths is not None:
        return [int(n) for n in batch.lengths.tolist()]
    return [int(x.shape[1])] * x.shape[0]


@_perturbation("white_noise", "white noise at SNR -10 dB - 20 log10(severity)", ("audio",))
def white_noise(
    batch: ModalityBatch,
    severity: float,
    generator: torch.Generator,
    min_snr_db: float = -10.0,
) -> ModalityBatch:
    """Add white Gaussian noise whose RMS is ``severity * 10^(-min_snr_db / 20)`` times
    each waveform's RMS over its valid samples: SNR = ``min_snr_db - 20 log10(severity)``
    dB, so severity 1 -> -10 dB, 0.1 -> +10 dB, 0.01 -> +30 dB, 0 -> no noise.
    Waveforms within [-1, 1] stay within it.

    Shape:
        values: (B, T); unchanged.
    """
    x = _tensor(batch, "white_noise")
    valid = _valid(batch, x).expand_as(x).to(x.dtype)  # (B, T)
    n = valid.sum(1, keepdim=True).clamp_min(1)
    rms = ((x * valid) ** 2).sum(1, keepdim=True).div(n).sqrt()  # (B, 1)
    scale = severity * 10 ** (-min_snr_db / 20)
    y = x + scale * rms * _randn(generator, x)
    out = _finish(batch, x, y, clamp=False)
    if bool(x.abs().max() <= 1.0):
        out = replace(out, values=_tensor(out, "white_noise").clamp(-1.0, 1.0))
    return out


@_perturbation("time_dropout", "zero chunks covering a fraction severity of the audio", ("audio",))
def time_dropout(
    batch: ModalityBatch, severity: float, generator: torch.Generator, chunks: int = 20
) -> ModalityBatch:
    """Cut each waveform's valid samples into ``chunks`` equal chunks and zero
    ``round(severity * chunks)`` of them, chosen at random.

    Shape:
        values: (B, T); unchanged.
    """
    x = _tensor(batch, "time_dropout")
    y = x.clone()
    for i, length in enumerate(_lengths(batch, x)):
        order = torch.randperm(chunks, generator=generator)
        if length == 0:
            continue
        bounds = torch.linspace(0, length, chunks + 1).round().long().tolist()
        for c in order[: round(severity * chunks)].tolist():
            y[i, bounds[c] : bounds[c + 1]] = 0
    return _finish(batch, x, y, clamp=False)


# --------------------------------------------------------------------------- sequences


@_perturbation("step_drop", "drop steps: hold the previous one or zero", ("timeseries", "video"))
def step_drop(
    batch: ModalityBatch,
    severity: float,
    generator: torch.Generator,
    mode: Literal["hold", "zero"] = "hold",
) -> ModalityBatch:
    """Drop each step with probability ``severity``: ``mode="hold"`` repeats the last kept
    step (the first step is always kept), ``"zero"`` sets it to 0.

    Shape:
        values: (B, T, C) or (B, T, 3, H, W); unchanged.
    """
    if mode not in ("hold", "zero"):
        raise ValueError(f"The 'mode' parameter must be one of ['hold', 'zero']. Got {mode!r}.")
    x = _tensor(batch, "step_drop")
    b, t = x.shape[:2]
    keep = _rand(generator, b, t, like=x) >= severity  # (B, T)
    tail = [1] * (x.dim() - 2)
    if mode == "zero":
        return _finish(batch, x, x * keep.view(b, t, *tail).to(x.dtype), clamp=False)
    keep[:, 0] = True
    steps = torch.arange(t, device=x.device).expand(b, t)
    source = torch.where(keep, steps, torch.zeros_like(steps)).cummax(1).values  # (B, T)
    index = source.view(b, t, *tail).expand_as(x)
    return _finish(batch, x, x.gather(1, index), clamp=False)


@_perturbation("time_shift", "clock offset and drift of a stream", ("timeseries",))
def time_shift(
    batch: ModalityBatch,
    severity: float,
    generator: torch.Generator,
    max_shift: int | None = None,
    max_drift: float = 0.1,
) -> ModalityBatch:
    """Shift each example's clock by an offset drawn in ``[-s, s] * max_shift`` steps and
    stretch it by a drift drawn in ``[-s, s] * max_drift`` (step ``t`` reads step
    ``round(t * (1 + drift) + offset)``, clamped to the valid steps: edges are held).
    ``max_shift`` defaults to a quarter of each example's length.

    Shape:
        values: (B, T, C); unchanged.
    """
    x = _tensor(batch, "time_shift")
    b, t = x.shape[:2]
    lengths = torch.tensor(_lengths(batch, x), device=x.device)  # (B,)
    u = _rand(generator, b, 2, like=x) * 2 - 1  # (B, 2) in [-1, 1)
    span = lengths.float() / 4 if max_shift is None else torch.full((b,), float(max_shift))
    offset = (u[:, 0] * severity * span.to(x.device)).round()  # (B,)
    drift = u[:, 1] * severity * max_drift  # (B,)
    steps = torch.arange(t, device=x.device, dtype=torch.float32)
    source = (steps[None] * (1 + drift[:, None]) + offset[:, None]).round().long()  # (B, T)
    source = source.clamp_min(0).minimum((lengths - 1).clamp_min(0)[:, None])
    index = source[:, :, None].expand_as(x)
    return _finish(batch, x, x.gather(1, index), clamp=False)


__all__ = [
    "ALL_KINDS",
    "PERTURBATIONS",
    "Perturbation",
    "blur",
    "char_swap",
    "check_severity",
    "contrast",
    "drop_modalities",
    "feature_drop",
    "gaussian_noise",
    "missing",
    "occlusion",
    "perturb",
    "perturb_batch",
    "perturbations_for",
    "step_drop",
    "time_dropout",
    "time_shift",
    "typo",
    "white_noise",
    "word_drop",
]
