"""CMU-MOSI utterance-level features and transcripts (binary sentiment).

The release of Poria et al. (ACL 2017), from
github.com/declare-lab/contextual-utterance-level-multimodal-sentiment-analysis @3874cf2.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.datasets._common import (
    DatasetInfo,
    check_modalities,
    locate,
    register_dataset,
)
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import Sample

INFO = DatasetInfo(
    name="mosi",
    description="CMU-MOSI utterances: text/audio/video features + transcripts, binary sentiment",
    licence="CMU-MOSI: research use",
    upstream="github.com/declare-lab/contextual-utterance-level-multimodal-sentiment-analysis"
    "@3874cf2 (data/)",
    splits=("train", "test", "all"),
    subdir="mosi",
    marker="data/transcripts.csv",
)

#: Feature modalities: name -> feature size (the CSVs also carry the label as last column).
FEATURE_DIMS: dict[str, int] = {"text": 100, "audio": 73, "video": 100}
MODALITIES: tuple[str, ...] = ("text", "audio", "video", "transcript")
CLASS_NAMES = ("negative", "positive")

_SPECS = {
    "text": ModalitySpec(
        "text", ModalityKind.FEATURES, shape=(100,), description="CNN text features (100-d)"
    ),
    "audio": ModalitySpec(
        "audio", ModalityKind.FEATURES, shape=(73,), description="openSMILE features (73-d)"
    ),
    "video": ModalitySpec(
        "video", ModalityKind.FEATURES, shape=(100,), description="3D-CNN features (100-d)"
    ),
    "transcript": ModalitySpec(
        "transcript", ModalityKind.TEXT, description="the utterance's transcript (upper case)"
    ),
}


def _read_feature_csv(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A quoted, header-less feature CSV -> ((N, dim) float32 features, (N,) int labels)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"MOSI file missing: {path}. The folder is incomplete; "
            "download it again (download=True) or fix root=."
        )
    text = path.read_text(encoding="utf-8").replace('"', "")
    try:
        arr = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"MOSI file {path} is not a numeric CSV ({e}); re-download it.") from e
    if arr.shape[1] != dim + 1:
        raise ValueError(
            f"MOSI file {path} has {arr.shape[1]} columns; expected {dim} features + 1 label "
            f"= {dim + 1}. The file is not this release's; re-download it."
        )
    labels = arr[:, -1]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"MOSI file {path}: last column must be a 0/1 label; re-download it.")
    return arr[:, :dim].astype(np.float32), labels.astype(np.int64)


def _read_row_ids(path: Path) -> np.ndarray:
    """Column 0 of ``data/text_{split}.csv``: 0-based row numbers into transcripts.csv."""
    if not path.is_file():
        raise FileNotFoundError(f"MOSI file missing: {path}. Download again or fix root=.")
    ids = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        cell = line.split(",", 1)[0].strip().strip('"')
        try:
            ids.append(int(float(cell)))
        except ValueError:
            raise ValueError(
                f"MOSI file {path}, line {n + 1}: column 0 must be a row number of "
                f"transcripts.csv, got {cell!r}. Re-download the file."
            ) from None
    return np.asarray(ids, dtype=np.int64)


def _check_args(split: str, modalities: Sequence[str]) -> tuple[str, ...]:
    if split not in INFO.splits:
        raise ValueError(
            f"The 'split' parameter of mosi must be one of {list(INFO.splits)}; got {split!r}."
        )
    return check_modalities("mosi", modalities, MODALITIES)


class MOSI(MultimodalDataset):
    """CMU-MOSI as released by Poria et al. (2017): one example per utterance.

    Schema (modalities selectable with ``modalities=``):

    ============ ========== ============ ==========================================
    name         kind       one example  source
    ============ ========== ============ ==========================================
    text         features   (100,)       ``data/text/text_{split}0.csv`` (CNN)
    audio        features   (73,)        ``data/audio/audio_{split}0.csv`` (openSMILE)
    video        features   (100,)       ``data/video/video_{split}0.csv`` (3D-CNN)
    transcript   text       ``str``      ``data/transcripts.csv`` column 1
    ============ ========== ============ ==========================================

    Target: binary sentiment, 0 ``negative`` / 1 ``positive`` (classification, 2 classes).
    ``Sample.id`` is the utterance id ``<video>_<n>``; ``meta`` has ``video``,
    ``utterance`` (``n`` as an int) and ``split``.

    Split rule: the release's speaker-independent split, 1,447 train / 752 test utterances
    from 62 / 31 videos (no video on both sides); ``all`` is train followed by test.
    ``groups()`` is the video id, so a validation set carved with
    :func:`~polymodal.data.splits.group_split` keeps videos (speakers) apart too.

    Joining: the feature CSVs have no ids; ``data/text_{split}.csv`` holds, in the same row
    order, the 0-based row number of each utterance in ``transcripts.csv``.  On load, the
    label of every feature CSV must equal ``transcripts.csv``'s label of the joined row, else
    a ``ValueError`` names the file and the first rows that disagree.

    Everything is parsed once with numpy and kept in memory (about 2 MB); ``__getitem__``
    only slices.
    """

    name = "mosi"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        modalities: Sequence[str] = MODALITIES,
    ) -> None:
        mods = _check_args(split, modalities)
        self.root = Path(root)
        self.split = split
        self.modalities = mods
        self.schema = Schema(
            tuple(_SPECS[m] for m in mods), TargetSpec("classification", 2, CLASS_NAMES)
        )
        data = self.root / "data"

        utt_ids, transcripts, t_labels = self._read_transcripts(data / "transcripts.csv")
        parts = ("train", "test") if split == "all" else (split,)
        rows: list[np.ndarray] = []
        sides: list[str] = []
        features: dict[str, list[np.ndarray]] = {m: [] for m in FEATURE_DIMS if m in mods}
        for part in parts:
            ids_path = data / f"text_{part}.csv"
            row = _read_row_ids(ids_path)
            if row.size and (row.min() < 0 or row.max() >= len(utt_ids)):
                raise ValueError(
                    f"MOSI file {ids_path}: row numbers must lie in 0..{len(utt_ids) - 1} "
                    f"(transcripts.csv rows); found {int(row.min())}..{int(row.max())}."
                )
            for m in features:
                path = data / m / f"{m}_{part}0.csv"
                feats, labels = _read_feature_csv(path, FEATURE_DIMS[m])
                if len(feats) != len(row):
                    raise ValueError(
                        f"MOSI file {path} has {len(feats)} rows but {ids_path} has {len(row)}; "
                        "they must be row-aligned. Re-download the data set."
                    )
                bad = np.flatnonzero(labels != t_labels[row])
                if bad.size:
                    first = ", ".join(
                        f"row {int(i)} ({utt_ids[row[i]]}: {int(labels[i])} vs "
                        f"{int(t_labels[row[i]])})"
                        for i in bad[:3]
                    )
                    raise ValueError(
                        f"MOSI labels disagree: {bad.size} rows of {path} have a label that "
                        f"differs from transcripts.csv for the utterance joined through "
                        f"{ids_path}; first: {first}. The files are from different releases or "
                        "corrupt; re-download the data set."
                    )
                features[m].append(feats)
            rows.append(row)
            sides += [part] * len(row)

        row_all = np.concatenate(rows)
        self._ids = [utt_ids[i] for i in row_all]
        self._transcripts = [transcripts[i] for i in row_all]
        self._labels = t_labels[row_all]
        self._sides = sides
        self._features = {m: np.concatenate(v) for m, v in features.items()}
        self._videos: list[str] = []
        self._numbers: list[int] = []
        for uid in self._ids:
            video, _, num = uid.rpartition("_")
            if not video or not num.isdigit():
                raise ValueError(
                    f"MOSI transcripts.csv: utterance id {uid!r} is not '<video>_<n>'; "
                    "re-download the data set."
                )
            self._videos.append(video)
            self._numbers.append(int(num))

    @staticmethod
    def _read_transcripts(path: Path) -> tuple[list[str], list[str], np.ndarray]:
        if not path.is_file():
            raise FileNotFoundError(f"MOSI file missing: {path}. Download again or fix root=.")
        ids: list[str] = []
        texts: list[str] = []
        labels: list[int] = []
        with open(path, newline="", encoding="utf-8") as f:
            for n, rec in enumerate(csv.reader(f)):
                if len(rec) != 4 or rec[3] not in ("0", "1"):
                    raise ValueError(
                        f"MOSI file {path}, line {n + 1}: expected 4 columns (utterance id, "
                        f"transcript, number, 0/1 label); got {rec!r}. Re-download the file."
                    )
                ids.append(rec[0])
                texts.append(rec[1])
                labels.append(int(rec[3]))
        return ids, texts, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> Sample:
        n = len(self._ids)
        if not -n <= index < n:
            raise IndexError(f"mosi[{index}]: index out of range for {n} examples")
        index %= n
        mods: dict[str, Any] = {}
        for m in self.modalities:
            if m == "transcript":
                mods[m] = self._transcripts[index]
            else:
                mods[m] = torch.tensor(self._features[m][index])
        return Sample(
            id=self._ids[index],
            modalities=mods,
            target=int(self._labels[index]),
            meta={
                "video": self._videos[index],
                "utterance": self._numbers[index],
                "split": self._sides[index],
            },
        )

    def targets(self) -> list[Any]:
        return [int(t) for t in self._labels]

    def groups(self) -> list[str]:
        return list(self._videos)

    def ids(self) -> list[str]:
        """The utterance id of every example, in order."""
        return list(self._ids)

    def videos(self) -> dict[str, list[int]]:
        """Each video's example indices, ordered by utterance number as a number.

        ``transcripts.csv`` sorts ids as strings (``_1, _10, _11, _2``); this orders them
        ``_1, _2, ..., _10, _11``, the order of the utterances in the video (context).
        Videos appear in the order of their first example.
        """
        out: dict[str, list[int]] = {}
        for i, v in enumerate(self._videos):
            out.setdefault(v, []).append(i)
        for idx in out.values():
            idx.sort(key=lambda i: self._numbers[i])
        return out


@register_dataset(INFO)
def mosi(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    modalities: Sequence[str] = MODALITIES,
) -> MOSI:
    """CMU-MOSI (see :class:`MOSI`): ``split`` train/test/all; ``modalities`` to select."""
    _check_args(split, modalities)
    return MOSI(locate(INFO, root, download), split=split, modalities=modalities)
