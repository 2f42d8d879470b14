"""A data set written out as a manifest: what ``polymodal datasets export NAME -o DIR`` does.

:func:`export_manifest` turns any :class:`~polymodal.data.dataset.MultimodalDataset` (a
built-in one, usually) into the layout a user's own data takes, so that the manifest path
can be tried, and copied, on data that is known to work::

    DIR/manifest.csv                  id,audio,image,label,split,group
    DIR/schema.yaml                   every modality spelled out, and the target
    DIR/audio/train/0_george_0.wav    one file per example and file modality
    DIR/image/train/0_george_0.png

One row per example, one column per modality, then ``label``, ``split`` and ``group``
(the unit validation must not cut through: speaker, subject, video).  Each kind is written
so that reading the manifest back gives the values the data set gave:

============ ==================================================================
kind         written as
============ ==================================================================
text         the text itself, inline
audio        a 32-bit float WAV at the modality's sample rate (exact)
image        an 8-bit PNG of the [0, 1] pixels (exact for 8-bit sources; the
             data set is read with ``normalize=False`` when it takes the option,
             and reading applies the same normalisation again)
timeseries   a CSV: ``timestamp`` (in the modality's time unit) then one column
             per channel, floats printed to 9 significant digits (float32 exact)
features     a ``.npy`` array of float32 (exact)
============ ==================================================================

A missing modality is an empty cell, as in any manifest.  ``tabular`` and ``video``
modalities are refused with a clear error: no built-in data set has them, and a user's
own data of those kinds is already in files.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema
from polymodal.progress import progress

PathLike = str | os.PathLike[str]

#: Kinds export writes, and the extension of their files (``None``: inline).
WRITTEN_AS: dict[ModalityKind, str | None] = {
    ModalityKind.TEXT: None,
    ModalityKind.AUDIO: ".wav",
    ModalityKind.IMAGE: ".png",
    ModalityKind.TIMESERIES: ".csv",
    ModalityKind.FEATURES: ".npy",
}
#: Seconds per unit of a time series' ``timestamp`` column.
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_manifest` wrote."""

    manifest: Path
    schema: Path
    rows: dict[str, int]  # split -> rows written
    files: int  # data files written (audio, images, series, arrays)


def export_manifest(
    splits: Mapping[str, MultimodalDataset],
    out_dir: PathLike,
    *,
    limit: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> ExportSummary:
    """Write ``splits`` (split name -> data set, one schema) as ``out_dir/manifest.csv``.

    Args:
        splits: the data sets to write, by the name their rows get in the ``split`` column
            (``{"train": ..., "test": ...}``); they must share one schema.
        out_dir: the folder to write into; created if absent.
        limit: at most this many examples per split, evenly spaced through it (so a small
            export still holds every class and group of a sorted data set); ``None``: all.
        overwrite: replace an existing ``manifest.csv``/``schema.yaml`` in ``out_dir``
            (default: refuse, so an export never destroys one).
        show_progress: report progress per split (see :func:`polymodal.progress.progress`).

    Returns:
        An :class:`ExportSummary` with the paths and counts.

    Raises:
        ValueError: no splits, schemas that differ, a modality kind export does not write,
            an image outside [0, 1], an audio modality without a sample rate, or an
            existing manifest without ``overwrite``.
    """
    if not splits:
        raise ValueError("export_manifest needs at least one split; got none.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"The 'limit' parameter must be a positive int or None; got {limit!r}.")
    schema = _one_schema(splits)
    out = Path(out_dir).expanduser()
    manifest, schema_path = out / "manifest.csv", out / "schema.yaml"
    existing = [p for p in (manifest, schema_path) if p.exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{existing[0]} already exists; export into an empty folder, or pass "
            "overwrite=True (--overwrite) to replace it."
        )
    out.mkdir(parents=True, exist_ok=True)
    specs = {spec.name: _written_spec(spec) for spec in schema.modalities}
    names: set[str] = set()
    files = 0
    rows: dict[str, int] = {}
    has_label = schema.target.task != "none"
    header = ["id", *specs, *(["label"] if has_label else []), "split", "group"]
    tmp = manifest.with_name(manifest.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for split, dataset in splits.items():
            n = len(dataset) if limit is None else min(limit, len(dataset))
            picked = [i * len(dataset) // n for i in range(n)]
            groups = dataset.groups()
            for i in progress(
                picked, desc=f"exporting {split}", unit="examples", enabled=show_progress
            ):
                sample = dataset[i]
                stem = _unique(names, f"{split}/{_UNSAFE.sub('_', sample.id).strip('_') or i}")
                cells = []
                for name, spec in specs.items():
                    cell, wrote = _write_cell(
                        sample.modalities.get(name),
                        sample,
                        spec,
                        out,
                        stem,
                        where=f"{split}[{i}] ({sample.id!r})",
                    )
                    cells.append(cell)
                    files += wrote
                label = [_label_cell(sample.target, schema)] if has_label else []
                writer.writerow([sample.id, *cells, *label, split, groups[i]])
            rows[split] = n
    tmp.replace(manifest)
    target: dict[str, Any] = {"task": schema.target.task}
    if schema.target.class_names:
        target["class_names"] = list(schema.target.class_names)
    doc: dict[str, Any] = {"modalities": [specs[s].to_dict() for s in specs]}
    if has_label:
        doc["target"] = target
    schema_path.write_text(
        f"# How {manifest.name} is read (polymodal datasets export); see polymodal.data.manifest\n"
        + yaml.safe_dump(doc, sort_keys=False),
        encoding="utf-8",
    )
    return ExportSummary(manifest, schema_path, rows, files)


def _one_schema(splits: Mapping[str, MultimodalDataset]) -> Schema:
    schemas = {name: ds.schema for name, ds in splits.items()}
    first_name, first = next(iter(schemas.items()))
    for name, schema in schemas.items():
        if schema != first:
            raise ValueError(
                f"Split {name!r} has another schema than split {first_name!r}; a manifest has "
                "one. Export them into separate folders."
            )
    return first


def _written_spec(spec: ModalitySpec) -> ModalitySpec:
    """``spec`` as the exported files are read back: a time series names its channels."""
    if spec.kind not in WRITTEN_AS:
        raise ValueError(
            f"Modality {spec.name!r} is of kind {spec.kind.value!r}, which export does not "
            f"write (it writes {', '.join(k.value for k in WRITTEN_AS)}). Export the other "
            "modalities (the data set's modalities= option)."
        )
    if spec.kind is ModalityKind.AUDIO and spec.sample_rate is None:
        raise ValueError(f"Audio modality {spec.name!r} has no sample_rate; a WAV needs one.")
    if spec.kind is ModalityKind.TIMESERIES:
        channels = spec.channels
        if channels is None and spec.shape:
            channels = tuple(f"{spec.name}_{c}" for c in range(spec.shape[0]))
        return dataclasses.replace(spec, channels=channels, time_unit=spec.time_unit or "ms")
    return spec


def _unique(names: set[str], stem: str) -> str:
    candidate, k = stem, 1
    while candidate in names:
        k += 1
        candidate = f"{stem}_{k}"
    names.add(candidate)
    return candidate


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _write_cell(
    value: Any, sample: Any, spec: ModalitySpec, out: Path, stem: str, where: str
) -> tuple[str, int]:
    """The manifest cell of ``value`` (writing its file), and how many files were written."""
    if value is None:
        return "", 0
    if spec.kind is ModalityKind.TEXT:
        if not isinstance(value, str):
            raise ValueError(
                f"{where}: text modality {spec.name!r} holds {type(value).__name__}, "
                "not a string; export writes one text per row."
            )
        return value, 0
    rel = Path(spec.name) / f"{stem}{WRITTEN_AS[spec.kind]}"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _array(value)
    if spec.kind is ModalityKind.AUDIO:
        import soundfile as sf

        sf.write(
            path,
            x.astype(np.float32),
            round(float(spec.sample_rate or 0)),
            subtype="FLOAT",
            format="WAV",
        )
    elif spec.kind is ModalityKind.IMAGE:
        _write_png(path, x, spec.name, where)
    elif spec.kind is ModalityKind.TIMESERIES:
        _write_series(path, x, sample.timestamps.get(spec.name), spec)
    else:  # features
        np.save(path, x.astype(np.float32))
    return rel.as_posix(), 1


def _write_png(path: Path, x: np.ndarray, name: str, where: str) -> None:
    from PIL import Image

    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"{where}: image {name!r} has shape {x.shape}; expected (1|3, H, W).")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"{where}: image {name!r} has values in [{lo:.3g}, {hi:.3g}], not [0, 1]: the data "
            "set normalised it. Build it with normalize=False to export its pixels."
        )
    pixels = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    mode = "L" if pixels.shape[0] == 1 else "RGB"
    arr = pixels[0] if mode == "L" else pixels.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(arr), mode=mode).save(path)


def _write_series(path: Path, x: np.ndarray, times: Any, spec: ModalitySpec) -> None:
    if x.ndim == 1:
        x = x[:, None]
    if times is None:  # evenly spaced at the modality's rate
        rate = float(spec.sample_rate or 1.0)
        t = np.arange(len(x), dtype=np.float64) / rate
    else:
        t = _array(times).astype(np.float64)
    t = t / _UNIT_SECONDS[spec.time_unit or "ms"]
    channels = list(spec.channels or ())
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", *channels])
        for ti, row in zip(t, x, strict=True):
            w.writerow([f"{ti:.17g}", *(f"{v:.9g}" for v in row.tolist())])


def _label_cell(target: Any, schema: Schema) -> str:
    t = schema.target
    if target is None:
        return ""
    if t.task == "classification":
        k = int(target)
        return t.class_names[k] if t.class_names else str(k)
    if t.task == "multilabel":
        hot = [i for i, v in enumerate(_array(target).reshape(-1).tolist()) if v > 0.5]
        names = t.class_names or tuple(str(i) for i in range(t.num_classes or len(hot)))
        return json.dumps([names[i] for i in hot])
    return repr(float(target))


__all__ = ["WRITTEN_AS", "ExportSummary", "export_manifest"]
