"""Audio-visual digits: each spoken digit of FSDD paired with an MNIST image of that digit.

FSDD: github.com/Jakobovski/free-spoken-digit-dataset @26eb9aa (``recordings/``).
MNIST: the original IDX files (LeCun et al.).
"""

from __future__ import annotations

import gzip
import os
import re
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
from polymodal.data.decode import decode_audio, image_from_array
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import Sample

INFO = DatasetInfo(
    name="av_digits",
    description="Spoken digits (FSDD, 8 kHz) paired with MNIST images of the same digit",
    licence="FSDD: CC BY-SA 4.0; MNIST: CC BY-SA 3.0",
    upstream="github.com/Jakobovski/free-spoken-digit-dataset@26eb9aa (recordings/) + MNIST "
    "IDX files",
    splits=("train", "test", "all"),
    subdir="fsdd",
    marker="recordings/0_george_0.wav",
)

#: The second folder av_digits reads; located (and downloaded) like the first.
MNIST_INFO = DatasetInfo(
    name="mnist",
    description="MNIST IDX files",
    licence="CC BY-SA 3.0",
    upstream="MNIST IDX files (LeCun et al.)",
    splits=("train", "test"),
    subdir="mnist",
    marker="t10k-labels-idx1-ubyte.gz",
)

SPEAKERS: tuple[str, ...] = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
#: Held out by default: one of the two USA/neutral speakers (theo; jackson stays in train)
#: and one of the two German-accented speakers (yweweler; lucas stays in train).  The test
#: then measures new voices, not unseen accents, and the speakers whose accent no one else
#: shares (george, Greek; nicolas, Belgian French) are all training data.
TEST_SPEAKERS: tuple[str, ...] = ("theo", "yweweler")
CLASS_NAMES = tuple(str(d) for d in range(10))

_RECORDING = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """A gzipped IDX file (MNIST format) as a numpy array.

    The header is two zero bytes, a type code (0x08 = uint8), the number of dimensions and
    one big-endian uint32 per dimension; the data follows.  Returns ``(N,)`` labels or
    ``(N, 28, 28)`` images as ``uint8``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"MNIST file missing: {p}. Download again or fix mnist_root=.")
    try:
        with gzip.open(p, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(
            f"MNIST file {p} is not a readable gzip file ({e}); re-download it."
        ) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"MNIST file {p} is not an IDX uint8 file (header {raw[:4].hex()}, expected "
            "0000 08 <ndim>); re-download it."
        )
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset != count:
        raise ValueError(
            f"MNIST file {p}: header says shape {tuple(dims)} ({count} bytes) but "
            f"{len(raw) - offset} data bytes follow; the file is truncated. Re-download it."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


class AVDigits(MultimodalDataset):
    """Spoken digits (FSDD) paired with handwritten digits (MNIST) of the same class.

    Schema:

    ======= ======= ============================== =====================================
    name    kind    one example                    source
    ======= ======= ============================== =====================================
    audio   audio   (T,) float32 at ``sample_rate`` ``fsdd/recordings/{d}_{spk}_{i}.wav``
                    (8,000 Hz by default), mono,
                    0.14-2.3 s
    image   image   (3, S, S) float32, S = 28 or   an MNIST image of digit ``d``
                    ``image_size``; ``grayscale``
                    gives (1, S, S)
    ======= ======= ============================== =====================================

    Images go through :func:`~polymodal.data.decode.image_from_array`: the grey digit is
    replicated to 3 channels (so ImageNet image encoders apply) and normalised with the
    ImageNet mean/std unless ``normalize=False`` (then in [0, 1]); ``grayscale=True`` keeps one
    channel (normalised with the averaged statistics).

    Target: the digit 0-9 (classification, 10 classes). ``Sample.id`` is the recording's
    stem (``7_theo_12``), followed by ``#c`` for copy ``c`` when a recording appears more
    than once (``7_theo_12#2``); ``meta`` has ``speaker``, ``take``, ``copy``,
    ``mnist_split``, ``mnist_index`` (row in that MNIST file) and ``mnist_label`` (always
    equal to the target).

    Split rule (speaker-held-out): test = the recordings of ``test_speakers`` (default
    :data:`TEST_SPEAKERS`, theo and yweweler: 1,000 recordings), train = the other four
    speakers (2,000; times ``images_per_recording``, below); ``all`` = train followed by
    test (3,000).  Train recordings are paired only with MNIST *train* images and test
    recordings only with MNIST *test* images, so no image is seen on both sides.
    ``groups()`` is the speaker.

    Pairing: deterministic in ``seed``.  For each side and digit, a permutation of that
    digit's MNIST images (a :class:`torch.Generator` seeded with ``seed``; train side first)
    is dealt to the recordings in (speaker, take) order, so no image is used twice and an
    example has the same image whatever the ``split``.  Only the paired images are kept in
    memory; audio is decoded lazily in ``__getitem__``.

    Images per recording: with one image per recording the image side sees only 2,000 of
    MNIST's 60,000 training images.  ``images_per_recording=k`` lists each *train-side*
    recording ``k`` times in a row (copies ``0 .. k-1``), each paired with a different MNIST
    train image of its digit: recording ``i`` of a digit gets images ``perm[i*k : i*k + k]``
    of that digit's permutation, so ``k=1`` gives exactly the default pairs and copy 0 is
    not the default pair for ``k>1``.  The test side has its own
    ``test_images_per_recording`` (default 1: the test set stays 1,000 examples, one per
    recording, and its pairs do not depend on ``images_per_recording``).  Copies share the
    speaker, so a validation set carved by ``groups()`` takes all copies of its speaker.
    The train side holds 200 recordings of each digit and MNIST at least 5,421 train images
    of each, so ``images_per_recording`` can be up to 27 (test side: 100 recordings, at
    least 892 images, up to 8).
    """

    name = "av_digits"

    def __init__(
        self,
        fsdd_root: str | os.PathLike[str],
        mnist_root: str | os.PathLike[str],
        split: str = "train",
        seed: int = 0,
        sample_rate: int = 8000,
        test_speakers: Sequence[str] = TEST_SPEAKERS,
        image_size: int | None = None,
        grayscale: bool = False,
        normalize: bool = True,
        images_per_recording: int = 1,
        test_images_per_recording: int = 1,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.modalities = check_modalities("av_digits", modalities, ("audio", "image"))
        test_set = _check_args(
            split,
            seed,
            sample_rate,
            test_speakers,
            image_size,
            images_per_recording,
            test_images_per_recording,
        )
        self.split = split
        self.seed = seed
        self.sample_rate = sample_rate
        self.test_speakers = tuple(sorted(test_set))
        self.image_size = image_size
        self.grayscale = grayscale
        self.normalize = normalize
        self.images_per_recording = images_per_recording
        self.test_images_per_recording = test_images_per_recording
        self.fsdd_root = Path(fsdd_root)
        self.mnist_root = Path(mnist_root)
        size = 28 if image_size is None else image_size
        self.schema = Schema(
            (
                ModalitySpec(
                    "audio",
                    ModalityKind.AUDIO,
                    shape=(),
                    sample_rate=float(sample_rate),
                    description="spoken digit (FSDD), mono",
                ),
                ModalitySpec(
                    "image",
                    ModalityKind.IMAGE,
                    shape=(1 if grayscale else 3, size, size),
                    description="handwritten digit (MNIST)",
                ),
            ),
            TargetSpec("classification", 10, CLASS_NAMES, name="digit"),
        )
        self.schema = self.schema.select(list(self.modalities))

        recs = self._scan_recordings(self.fsdd_root / "recordings")
        absent = sorted(test_set - {r[1] for r in recs})
        if absent:
            raise ValueError(
                f"The 'test_speakers' parameter of av_digits names {absent}, who have no "
                f"recordings in {self.fsdd_root / 'recordings'}; speakers there: "
                f"{sorted({r[1] for r in recs})}."
            )
        sides = {
            "train": [r for r in recs if r[1] not in test_set],
            "test": [r for r in recs if r[1] in test_set],
        }
        # Pair every recording (both sides, train first) so that pairs do not depend on split.
        # copies[side]: MNIST images of each recording of that side, in recording order.
        per_rec = {"train": images_per_recording, "test": test_images_per_recording}
        option = {"train": "images_per_recording", "test": "test_images_per_recording"}
        gen = torch.Generator().manual_seed(seed)
        copies: dict[str, list[list[int]]] = {}
        labels_by_side: dict[str, np.ndarray] = {}
        for side in ("train", "test"):
            labels = read_idx(self.mnist_root / _IDX_FILES[side][1])
            labels_by_side[side] = labels
            k = per_rec[side]
            chosen: list[list[int]] = [[] for _ in sides[side]]
            for digit in range(10):
                pool = np.flatnonzero(labels == digit)
                mine = [i for i, r in enumerate(sides[side]) if r[0] == digit]
                if len(mine) * k > len(pool):
                    raise ValueError(
                        f"The '{option[side]}' parameter of av_digits is {k}: {len(mine)} "
                        f"{side} recordings of digit {digit} need {len(mine) * k} distinct "
                        f"MNIST {side} images of it but there are {len(pool)}; use at most "
                        f"{len(pool) // max(len(mine), 1)}."
                    )
                perm = torch.randperm(len(pool), generator=gen).numpy()
                for n, i in enumerate(mine):
                    chosen[i] = [int(pool[j]) for j in perm[n * k : n * k + k]]
            copies[side] = chosen

        parts = ("train", "test") if split == "all" else (split,)
        self._recs: list[tuple[int, str, int, str]] = []  # one per example (copies repeat)
        self._copy: list[int] = []
        self._mnist_side: list[str] = []
        self._mnist_index: list[int] = []
        images: list[np.ndarray] = []
        mnist_labels: list[np.ndarray] = []
        for side in parts:
            imgs = read_idx(self.mnist_root / _IDX_FILES[side][0])
            n_lab = len(labels_by_side[side])
            if imgs.ndim != 3 or imgs.shape[0] != n_lab:
                raise ValueError(
                    f"MNIST file {self.mnist_root / _IDX_FILES[side][0]} has shape "
                    f"{imgs.shape}; expected ({n_lab}, 28, 28) to match its labels file. "
                    "Re-download MNIST."
                )
            idx = np.asarray([j for rec in copies[side] for j in rec], dtype=np.int64)
            images.append(imgs[idx])
            mnist_labels.append(labels_by_side[side][idx])
            k = per_rec[side]
            self._recs += [r for r in sides[side] for _ in range(k)]
            self._copy += list(range(k)) * len(sides[side])
            self._mnist_side += [side] * len(idx)
            self._mnist_index += idx.tolist()
        self._images = np.concatenate(images) if images else np.zeros((0, 28, 28), np.uint8)
        self._mnist_labels = np.concatenate(mnist_labels).astype(np.int64)

    @staticmethod
    def _scan_recordings(folder: Path) -> list[tuple[int, str, int, str]]:
        """(digit, speaker, take, file name) of every WAV, sorted by speaker, digit, take."""
        if not folder.is_dir():
            raise FileNotFoundError(f"FSDD folder missing: {folder}. Download again or fix root=.")
        out = []
        for name in os.listdir(folder):
            if not name.endswith(".wav"):
                continue
            m = _RECORDING.match(name)
            if m is None:
                raise ValueError(
                    f"FSDD recording {folder / name} is not named '{{digit}}_{{speaker}}_"
                    "{index}.wav'; remove or rename it."
                )
            out.append((int(m[1]), m[2], int(m[3]), name))
        if not out:
            raise FileNotFoundError(f"No FSDD recordings (*.wav) in {folder}; download again.")
        out.sort(key=lambda r: (r[1], r[0], r[2]))
        return out

    def __len__(self) -> int:
        return len(self._recs)

    def __getitem__(self, index: int) -> Sample:
        n = len(self._recs)
        if not -n <= index < n:
            raise IndexError(f"av_digits[{index}]: index out of range for {n} examples")
        index %= n
        digit, speaker, take, fname = self._recs[index]
        copy = self._copy[index]
        stem = fname[: -len(".wav")]
        repeated = self.images_per_recording > 1 or self.test_images_per_recording > 1
        path = self.fsdd_root / "recordings" / fname
        values: dict[str, Any] = {}
        if "audio" in self.modalities:
            values["audio"] = decode_audio(
                path, sample_rate=self.sample_rate, where=f"av_digits[{index}]"
            )
        if "image" in self.modalities:
            values["image"] = image_from_array(
                self._images[index],
                size=self.image_size,
                normalize=self.normalize,
                grayscale=self.grayscale,
                where=f"av_digits[{index}], MNIST {self._mnist_side[index]} #"
                f"{self._mnist_index[index]}",
            )
        return Sample(
            id=f"{stem}#{copy}" if repeated else stem,
            modalities=values,
            target=digit,
            meta={
                "speaker": speaker,
                "take": take,
                "copy": copy,
                "path": str(path),
                "mnist_split": self._mnist_side[index],
                "mnist_index": self._mnist_index[index],
                "mnist_label": int(self._mnist_labels[index]),
            },
        )

    def targets(self) -> list[Any]:
        return [r[0] for r in self._recs]

    def groups(self) -> list[str]:
        return [r[1] for r in self._recs]

    def mnist_pairs(self) -> list[tuple[str, int]]:
        """The (MNIST split, MNIST row) paired with each example, without decoding."""
        return list(zip(self._mnist_side, self._mnist_index, strict=True))

    def mnist_labels(self) -> list[int]:
        """The label of each example's MNIST image (from the IDX labels file)."""
        return [int(x) for x in self._mnist_labels]


def _check_args(
    split: str,
    seed: int,
    sample_rate: int,
    test_speakers: Sequence[str],
    image_size: int | None,
    images_per_recording: int = 1,
    test_images_per_recording: int = 1,
) -> set[str]:
    for option, k in (
        ("images_per_recording", images_per_recording),
        ("test_images_per_recording", test_images_per_recording),
    ):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(
                f"The '{option}' parameter of av_digits must be an int >= 1 (MNIST images "
                f"paired with each recording, each a copy of it); got {k!r}."
            )
    if split not in INFO.splits:
        raise ValueError(
            f"The 'split' parameter of av_digits must be one of {list(INFO.splits)}; got {split!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"The 'seed' parameter of av_digits must be an int; got {seed!r}.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(
            f"The 'sample_rate' parameter of av_digits must be a positive int (Hz); got "
            f"{sample_rate!r}. FSDD is recorded at 8000 Hz."
        )
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0
    ):
        raise ValueError(
            f"The 'image_size' parameter of av_digits must be a positive int or None (28); "
            f"got {image_size!r}."
        )
    if isinstance(test_speakers, str):
        raise TypeError(
            f"The 'test_speakers' parameter of av_digits must be a sequence of names, e.g. "
            f"({test_speakers!r},); got the string {test_speakers!r}."
        )
    test_set = set(test_speakers)
    if not test_set or len(test_set) >= len(SPEAKERS):
        raise ValueError(
            f"The 'test_speakers' parameter of av_digits must hold out 1 to {len(SPEAKERS) - 1} "
            f"of {list(SPEAKERS)}; got {list(test_speakers)}."
        )
    return test_set


def _mnist_root(
    root: str | os.PathLike[str] | None,
    mnist_root: str | os.PathLike[str] | None,
    download: bool,
) -> Path:
    if mnist_root is not None:
        return locate(MNIST_INFO, mnist_root, download)
    return locate(MNIST_INFO, root, download)


@register_dataset(INFO)
def av_digits(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = 0,
    sample_rate: int = 8000,
    test_speakers: Sequence[str] = TEST_SPEAKERS,
    image_size: int | None = None,
    grayscale: bool = False,
    normalize: bool = True,
    mnist_root: str | os.PathLike[str] | None = None,
    images_per_recording: int = 1,
    test_images_per_recording: int = 1,
    modalities: Sequence[str] | None = None,
) -> AVDigits:
    """Spoken + handwritten digits (see :class:`AVDigits`).

    ``root`` is a folder holding ``fsdd/`` and ``mnist/`` (or ``fsdd/`` itself, with
    ``mnist_root`` pointing at MNIST); without it, ``$POLYMODAL_DATA`` then the user cache
    are searched for both.  ``download=True`` fetches whichever is missing.
    """
    _check_args(
        split,
        seed,
        sample_rate,
        test_speakers,
        image_size,
        images_per_recording,
        test_images_per_recording,
    )
    fsdd = locate(INFO, root, download)
    mnist = _mnist_root(root, mnist_root, download)
    return AVDigits(
        fsdd,
        mnist,
        split=split,
        seed=seed,
        sample_rate=sample_rate,
        test_speakers=test_speakers,
        image_size=image_size,
        grayscale=grayscale,
        normalize=normalize,
        images_per_recording=images_per_recording,
        test_images_per_recording=test_images_per_recording,
        modalities=modalities,
    )
