"""Smartphone + smartwatch human activity recognition (Matey-Sanz et al. 2023).

23 subjects wore a smartwatch and carried a smartphone while sitting, standing up,
walking, turning and sitting down; 223 recordings, each with one CSV per device
(``DATA/sXX/sXX_YY_sp.csv`` phone, ``..._sw.csv`` watch; columns
``x_acc,y_acc,z_acc,x_gyro,y_gyro,z_gyro,timestamp,label``, ~100 Hz, epoch milliseconds).
Each device keeps its own clock: the phone delivers in bursts (many rows share a
timestamp) and the two streams start tens of milliseconds apart, so they are aligned by
timestamp before windowing.

Licence CC BY 4.0.  Upstream: github.com/GeoTecINIT/sp-sw-har-dataset @1408d85
(Zenodo 10.5281/zenodo.8398688).  Matey-Sanz, Casteleyn, Granell (2023), Data in Brief 109809.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import numbers
import os
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.data.align import (
    align_streams,
    merge_duplicate_times,
    sliding_windows,
    window_labels,
)
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.datasets._common import DatasetInfo, check_modalities, locate, register_dataset
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.paths import cache_dir
from polymodal.data.sample import Sample
from polymodal.errors import unknown_name_error

__all__ = [
    "CHANNELS",
    "CLASSES",
    "DEVICES",
    "INFO",
    "TEST_SUBJECTS",
    "HARPhoneWatch",
    "har_phone_watch",
]

#: Class index order (the order of the upstream README), fixed for every split.
CLASSES = ("WALKING", "TURNING", "SEATED", "SITTING_DOWN", "STANDING_UP")
#: The six channels of each device, in file order: accelerometer (m/s^2), gyroscope (rad/s).
CHANNELS = ("x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro")
#: Modality name -> file suffix.
DEVICES = {"phone": "sp", "watch": "sw"}
#: Held-out subjects of the ``test`` split: every 4th subject by sorted id.
TEST_SUBJECTS = ("s04", "s08", "s12", "s16", "s20")

_HEADER = ",".join((*CHANNELS, "timestamp", "label"))
_CACHE_VERSION = 2

INFO = DatasetInfo(
    name="har_phone_watch",
    description=(
        "Smartphone + smartwatch accelerometer/gyroscope, 5 activities, 23 subjects; "
        "windows of the two streams aligned by timestamp"
    ),
    licence="CC BY 4.0",
    upstream="github.com/GeoTecINIT/sp-sw-har-dataset @1408d85 (Zenodo 10.5281/zenodo.8398688)",
    splits=("train", "test", "all"),
    subdir="har_phone_watch",
    marker="DATA/subjects_info.csv",
)


# --------------------------------------------------------------------------- reading


def _read_device_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One device file -> values (T, 6) float64, times (T,) float64 ms, labels (T,) int64."""
    with path.open(encoding="utf-8") as f:
        header = f.readline().strip()
        text = f.read()
    if header != _HEADER:
        raise ValueError(
            f"{path}: expected the header {_HEADER!r}, got {header!r}. Is this a file of the "
            "sp-sw-har-dataset (DATA/sXX/sXX_YY_sp.csv)?"
        )
    # The label is the last field; numbers never contain these names, so a textual
    # replace by the class index turns the file into a purely numeric table.
    for code, name in enumerate(CLASSES):
        text = text.replace("," + name, f",{code}")
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(
            f"{path}: could not parse the rows as numbers with a label in {list(CLASSES)} "
            f"({e}). Check the file for an unknown label or a truncated line."
        ) from None
    if table.shape[1] != 8:
        raise ValueError(f"{path}: expected 8 columns ({_HEADER}), got {table.shape[1]}.")
    return table[:, :6], table[:, 6], table[:, 7].astype(np.int64)


def _recordings(data: Path) -> list[tuple[str, str, Path, Path]]:
    """(subject, recording, phone file, watch file) of every recording, sorted."""
    out: list[tuple[str, str, Path, Path]] = []
    for sp in sorted(data.glob("s*/s*_*_sp.csv")):
        rec = sp.name[: -len("_sp.csv")]
        sw = sp.with_name(f"{rec}_sw.csv")
        if not sw.is_file():
            raise ValueError(
                f"{sp} has no watch file {sw.name} beside it; restore the data set "
                "(download=True fetches a fresh copy)."
            )
        out.append((sp.parent.name, rec, sp, sw))
    if not out:
        raise ValueError(f"No recordings (sXX/sXX_YY_sp.csv) under {data}; the copy is incomplete.")
    return out


def _orientations(data: Path) -> dict[str, str]:
    path = data / "executions_info.csv"
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        f.readline()
        for line in f:
            parts = line.strip().split(",")
            if len(parts) >= 2:
                out[parts[0]] = parts[1]
    return out


def _process_recording(
    sp: Path, sw: Path, rate: float, window: float, hop: float, max_gap: float | None
) -> dict[str, np.ndarray]:
    """Align, window and label one recording (see :func:`har_phone_watch`)."""
    pv, pt, pl = _read_device_csv(sp)
    wv, wt, _ = _read_device_csv(sw)
    if pt.size < 2 or wt.size < 2:
        raise ValueError(f"{sp.parent}: recording {sp.name[:-7]} has fewer than 2 rows in a file.")
    origin = min(pt[0], wt[0])  # epoch ms; both devices' times become seconds from here
    p_times = torch.from_numpy((pt - origin) / 1000.0)
    w_times = torch.from_numpy((wt - origin) / 1000.0)
    try:
        p_vals, p_t = merge_duplicate_times(torch.from_numpy(pv), p_times, reduce="mean")
        p_lab, _ = merge_duplicate_times(torch.from_numpy(pl), p_times, reduce="first")
        w_vals, w_t = merge_duplicate_times(torch.from_numpy(wv), w_times, reduce="mean")
        aligned = align_streams(
            {"phone": (p_vals, p_t), "watch": (w_vals, w_t), "label": (p_lab, p_t)},
            rate=rate,
            max_gap=max_gap,
            method={"label": "nearest"},
        )
    except ValueError as e:
        raise ValueError(f"{sp} / {sw.name}: {e}") from None
    both = torch.cat([aligned.values["phone"], aligned.values["watch"]], dim=1)  # (N, 12)
    # Times from here on count from the grid's start, the first instant both devices record;
    # k / rate exactly, so window starts are round numbers (0.0, 1.0, ...).
    rel = torch.arange(len(aligned), dtype=torch.float64) / rate  # (N,)
    wins = sliding_windows(both, rel, window, hop, valid=aligned.valid)
    labs = window_labels(aligned.values["label"], wins)
    keep = wins.valid.numpy()
    vals = wins.values.to(torch.float32).numpy()[keep]  # (W, L, 12)
    return {
        "phone": vals[:, :, :6],
        "watch": vals[:, :, 6:],
        "label": labs.labels.numpy()[keep],
        "purity": labs.purity.numpy()[keep],
        "start": wins.start.numpy()[keep],
    }


def _fingerprint(files: Sequence[Path]) -> str:
    h = hashlib.sha1()
    for p in files:
        st = p.stat()
        h.update(f"{p.parent.name}/{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _build(
    root: Path, rate: float, window: float, hop: float, max_gap: float | None
) -> dict[str, np.ndarray]:
    data = root / "DATA"
    recs = _recordings(data)
    orient = _orientations(data)
    parts = [_process_recording(sp, sw, rate, window, hop, max_gap) for _, _, sp, sw in recs]
    subjects = sorted({s for s, _, _, _ in recs})
    subj_of_rec = np.array([subjects.index(s) for s, _, _, _ in recs], dtype=np.int64)
    counts = np.array([p["label"].shape[0] for p in parts], dtype=np.int64)
    rec_index = np.repeat(np.arange(len(recs), dtype=np.int64), counts)
    return {
        "phone": np.concatenate([p["phone"] for p in parts]),
        "watch": np.concatenate([p["watch"] for p in parts]),
        "label": np.concatenate([p["label"] for p in parts]),
        "purity": np.concatenate([p["purity"] for p in parts]),
        "start": np.concatenate([p["start"] for p in parts]),
        "recording": rec_index,
        "recordings": np.array([r for _, r, _, _ in recs]),
        "recording_subject": subj_of_rec,
        "recording_orientation": np.array([orient.get(r, "") for _, r, _, _ in recs]),
        "subjects": np.array(subjects),
    }


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_arrays(
    root: Path, rate: float, window: float, hop: float, max_gap: float | None, cache: bool
) -> dict[str, np.ndarray]:
    if not cache:
        return _build(root, rate, window, hop, max_gap)
    files = sorted((root / "DATA").glob("s*/s*_*_s[pw].csv"))
    key = json.dumps(
        {
            "version": _CACHE_VERSION,
            "rate": rate,
            "window": window,
            "hop": hop,
            "max_gap": max_gap,
            "files": _fingerprint(files),
        },
        sort_keys=True,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = cache_dir() / "processed" / f"har_phone_watch-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache file: rebuild it below
    arrays = _build(root, rate, window, hop, max_gap)
    try:
        _atomic_savez(path, arrays)
    except OSError as e:
        warnings.warn(
            f"Could not write the har_phone_watch cache {path} ({e}); the windows are rebuilt "
            "on every load. Set XDG_CACHE_HOME to a writable folder or pass cache=False.",
            stacklevel=3,
        )
    return arrays


# --------------------------------------------------------------------------- data set


class HARPhoneWatch(MultimodalDataset):
    """Windows of aligned phone and watch streams; built by :func:`har_phone_watch`.

    Each example: ``phone`` and ``watch`` (L, 6) float32 (L = ``round(window * rate)``),
    target the activity index into :data:`CLASSES`.
    """

    name = "har_phone_watch"

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        indices: np.ndarray,
        split: str,
        modalities: tuple[str, ...],
        rate: float,
    ) -> None:
        self.split = split
        self.devices = modalities
        self.rate = rate
        self._values = {d: arrays[d][indices] for d in modalities}  # each (W, L, 6)
        self._label = arrays["label"][indices]
        self._purity = arrays["purity"][indices]
        self._start = arrays["start"][indices]
        self._rec = arrays["recording"][indices]
        self._recordings = [str(r) for r in arrays["recordings"]]
        self._orient = [str(o) for o in arrays["recording_orientation"]]
        subjects = [str(s) for s in arrays["subjects"]]
        self._rec_subject = [subjects[int(i)] for i in arrays["recording_subject"]]
        length = int(arrays["phone"].shape[1])
        self._offsets = torch.arange(length, dtype=torch.float64) / rate  # (L,)
        desc = {"phone": "smartphone", "watch": "smartwatch"}
        self.schema = Schema(
            tuple(
                ModalitySpec(
                    d,
                    ModalityKind.TIMESERIES,
                    shape=(len(CHANNELS),),
                    sample_rate=rate,
                    description=f"{desc[d]} accelerometer (m/s^2) + gyroscope (rad/s), "
                    f"channels {', '.join(CHANNELS)}",
                    # what a CSV given to `predict` must match: the upstream files' channel
                    # names and millisecond timestamps, this grid's rate and window length
                    channels=CHANNELS,
                    time_unit="ms",
                    length=length,
                )
                for d in modalities
            ),
            TargetSpec("classification", len(CLASSES), CLASSES, name="activity"),
        )

    def __len__(self) -> int:
        return int(self._label.shape[0])

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} windows")
        index %= n
        rec = int(self._rec[index])
        start = float(self._start[index])
        times = start + self._offsets  # (L,) s from the start of the phone/watch overlap
        recording = self._recordings[rec]
        return Sample(
            id=f"{recording}@{round(start, 3)!r}",
            modalities={d: torch.from_numpy(v[index].copy()) for d, v in self._values.items()},
            target=int(self._label[index]),
            timestamps=dict.fromkeys(self.devices, times),
            meta={
                "subject": self._rec_subject[rec],
                "recording": recording,
                "start": start,
                "orientation": self._orient[rec],
                "purity": float(self._purity[index]),
            },
        )

    def targets(self) -> list[Any]:
        return [int(t) for t in self._label]

    def groups(self) -> list[str]:
        return [self._rec_subject[int(r)] for r in self._rec]

    def videos(self) -> dict[str, list[int]]:
        """Each recording's window indices, in time order: the sequences a context model
        (``task: context``) reads.  Recordings appear in the order of their first window."""
        out: dict[str, list[int]] = {}
        for i, r in enumerate(self._rec):
            out.setdefault(self._recordings[int(r)], []).append(i)
        for idx in out.values():
            idx.sort(key=lambda i: float(self._start[i]))
        return out


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


@register_dataset(INFO)
def har_phone_watch(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    rate: float = 50.0,
    window: float = 2.0,
    hop: float = 1.0,
    modalities: Sequence[str] | None = None,
    max_gap: float | None = 0.5,
    min_purity: float = 0.0,
    cache: bool = True,
) -> HARPhoneWatch:
    """Phone + watch activity windows, split by subject.

    Per recording, the phone and watch streams are read, rows that share a timestamp are
    averaged, both are linearly resampled onto one grid at ``rate`` over the overlap of
    their spans (:func:`polymodal.data.align.align_streams`), and the grid is cut into
    windows of ``window`` seconds every ``hop`` seconds.  A window's label is the majority
    of the phone's per-row labels on the grid (nearest row; ties to the smaller class
    index, see :data:`CLASSES` for the order).  Windows with a grid point inside a gap of
    more than ``max_gap`` seconds in either stream are dropped.  Alignment always uses both
    devices, so the windows are the same whichever ``modalities`` are selected.

    Splits, by subject (``groups()`` returns the subject, so carve validation from train
    with :func:`polymodal.data.splits.group_split`):

    * ``test``: subjects s04, s08, s12, s16, s20 (every 4th by sorted id, :data:`TEST_SUBJECTS`);
    * ``train``: the other 18 subjects (s01-s03, s05-s07, s09-s11, s13-s15, s17-s19, s21-s23);
    * ``all``: every subject.

    The windowed arrays of all subjects are cached in
    ``polymodal.data.paths.cache_dir() / "processed"`` as one ``.npz`` per
    (rate, window, hop, max_gap), keyed also by the size and mtime of every source file.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.
        root: folder holding ``DATA/`` (or its parent); default ``$POLYMODAL_DATA`` then the
            user cache.
        download: fetch from upstream when not found.
        rate: grid rate in Hz.
        window, hop: window length and step in seconds.
        modalities: which of ``"phone"``, ``"watch"`` become modalities, in this order
            (``None``: both).
        max_gap: seconds; ``None`` keeps every window.
        min_purity: drop windows whose majority label covers less than this fraction.
        cache: read/write the processed cache (``False`` rebuilds in memory).

    Returns:
        A :class:`HARPhoneWatch`; each example has ``phone``/``watch`` (L, 6) with
        L = ``round(window * rate)`` (100 for 2 s at 50 Hz), ``timestamps`` per device (L,)
        in seconds from the recording's start (the first instant both devices record), id
        ``"sXX_YY@start"`` (e.g. ``"s01_01@12.0"``), meta subject, recording, start,
        orientation, purity.
    """
    if split not in INFO.splits:
        raise unknown_name_error("split", split, list(INFO.splits))
    rate = _positive("rate", rate)
    window = _positive("window", window)
    hop = _positive("hop", hop)
    if max_gap is not None:
        max_gap = _positive("max_gap", max_gap)
    devs = check_modalities("har_phone_watch", modalities, tuple(DEVICES))
    if not 0.0 <= min_purity <= 1.0:
        raise ValueError(f"min_purity must be in [0, 1], got {min_purity!r}")

    found = locate(INFO, root, download)
    arrays = _load_arrays(found, rate, window, hop, max_gap, cache)
    subjects = [str(s) for s in arrays["subjects"]]
    subj = arrays["recording_subject"][arrays["recording"]]  # (W,) subject index
    is_test = np.isin(np.array(subjects)[subj], TEST_SUBJECTS)
    if split == "test":
        keep = is_test
    elif split == "train":
        keep = ~is_test
    else:
        keep = np.ones_like(is_test)
    keep &= arrays["purity"] >= min_purity
    return HARPhoneWatch(arrays, np.nonzero(keep)[0], split, devs, rate)
