"""Dispatch on a kind: :func:`decode_file`, :func:`kind_from_extension`, :data:`EXTENSIONS`.

Also holds :data:`Decoded` (what :func:`decode_file` returns) and the helpers that read sizes
and rates from a :class:`~polymodal.data.modality.ModalitySpec`.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from polymodal.data.decode.audio import decode_audio
from polymodal.data.decode.errors import PathLike, _check_file, _error
from polymodal.data.decode.features import decode_features
from polymodal.data.decode.image import decode_image
from polymodal.data.decode.limits import get_limits, limit_error
from polymodal.data.decode.resample import _check_rate
from polymodal.data.decode.text import decode_text
from polymodal.data.decode.timeseries import TimeSeries
from polymodal.data.decode.timeseries_spec import decode_timeseries_for_spec
from polymodal.data.decode.video import VideoClip, decode_video
from polymodal.data.modality import ModalityKind, ModalitySpec

EXTENSIONS: dict[ModalityKind, tuple[str, ...]] = {
    ModalityKind.IMAGE: (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    ModalityKind.AUDIO: (".wav", ".flac", ".ogg"),
    ModalityKind.VIDEO: (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm"),
    ModalityKind.TIMESERIES: (".csv",),
    ModalityKind.FEATURES: (".npy", ".npz", ".pt", ".pth"),
}
"""Lowercase file extensions of each kind; used to infer a manifest column's kind."""

_KIND_BY_EXT = {ext: kind for kind, exts in EXTENSIONS.items() for ext in exts}

Decoded = str | Tensor | VideoClip | TimeSeries
"""What :func:`decode_file` returns (see its docstring for which kind gives which)."""


def kind_from_extension(path: PathLike) -> ModalityKind | None:
    """The :data:`EXTENSIONS` kind of ``path``'s extension (case-insensitive), or ``None``.

    ``.csv`` maps to ``timeseries``; ``.txt`` and unknown extensions give ``None``.
    """
    return _KIND_BY_EXT.get(Path(os.fspath(path)).suffix.lower())


def _spec_hw(spec: ModalitySpec, kind: ModalityKind) -> tuple[tuple[int, int] | None, bool]:
    """(H, W) and grayscale from a (C, H, W) spec shape."""
    if spec.shape is None:
        return None, False
    if len(spec.shape) != 3 or spec.shape[0] not in (1, 3):
        raise ValueError(
            f"ModalitySpec {spec.name!r} ({kind.value}) has shape {spec.shape}; expected "
            "(3, H, W) or (1, H, W) for decoding, or None to keep the file's size."
        )
    return (spec.shape[1], spec.shape[2]), spec.shape[0] == 1


def decode_file(
    path: PathLike,
    kind: ModalityKind | str,
    spec: ModalitySpec | None = None,
    *,
    where: str = "",
) -> Decoded:
    """Decode ``path`` as a modality of ``kind``, with sizes and rates from ``spec``.

    ==========  ===================================================  ===============
    kind        what ``spec`` sets                                   returns
    ==========  ===================================================  ===============
    text        (file read as UTF-8)                                 ``str``
    image       ``shape`` (3|1, H, W) -> resize to (H, W)            (3, H, W) Tensor
    audio       ``sample_rate`` -> resample                          (T,) Tensor
    video       ``sample_rate`` -> fps, ``shape`` -> frame size      :class:`VideoClip`
    timeseries  ``channels`` read by name; ``time_unit``,             :class:`TimeSeries`
                ``sample_rate`` and ``length`` checked (rate: used
                when the file has no ``timestamp`` column);
                ``shape`` (C,) is checked
    features    ``shape`` is checked against the last dim            (D,)/(T, D) Tensor
    tabular     as features, must be 1-D                             (D,) Tensor
    ==========  ===================================================  ===============
    """
    kind = ModalityKind.parse(kind)
    if spec is not None and spec.kind is not kind:
        raise ValueError(
            f"decode_file got kind={kind.value!r} but spec {spec.name!r} has kind "
            f"{spec.kind.value!r}; pass the spec's kind."
        )
    if kind is ModalityKind.TEXT:
        p = _check_file(path, where)
        max_chars = get_limits().max_text_chars
        try:
            with open(p, encoding="utf-8") as fh:
                text = fh.read(max_chars + 1)  # never more than the limit (and one)
        except UnicodeDecodeError as e:
            raise _error("text", path, where, f"it is not UTF-8 ({e})", "save it as UTF-8") from e
        if len(text) > max_chars:
            size = p.stat().st_size
            raise limit_error(
                "text",
                path,
                where,
                f"it has more than {max_chars:,} characters ({size:,} bytes)",
                "max_text_chars",
                size,
                "shorten it, or split it into several examples",
            )
        return decode_text(
            text, where=f"file '{os.fspath(path)}'" + (f", {where}" if where else "")
        )
    if kind is ModalityKind.IMAGE:
        hw, gray = _spec_hw(spec, kind) if spec is not None else (None, False)
        return decode_image(path, size=hw, grayscale=gray, where=where)
    if kind is ModalityKind.AUDIO:
        rate = spec.sample_rate if spec is not None else None
        return decode_audio(
            path,
            sample_rate=None if rate is None else _check_rate(rate, "spec.sample_rate"),
            where=where,
        )
    if kind is ModalityKind.VIDEO:
        hw = _spec_hw(spec, kind)[0] if spec is not None else None
        fps = spec.sample_rate if spec is not None else None
        return decode_video(path, fps=fps, size=hw, where=where)
    if kind is ModalityKind.TIMESERIES:
        return decode_timeseries_for_spec(path, spec, where)
    # features / tabular
    feats = decode_features(path, where=where)
    if kind is ModalityKind.TABULAR and feats.dim() != 1:
        raise _error(
            "tabular row",
            path,
            where,
            f"expected one vector (D,), got shape {tuple(feats.shape)}",
            "use kind 'features' with sequence=True for (T, D) data",
        )
    if spec is not None and spec.shape is not None and tuple(feats.shape[-1:]) != spec.shape:
        raise _error(
            kind.value,
            path,
            where,
            f"expected {spec.shape[0] if spec.shape else '?'} "
            f"features (spec {spec.name!r} shape {spec.shape}), got shape {tuple(feats.shape)}",
            "re-extract the features or fix the spec's shape",
        )
    return feats
