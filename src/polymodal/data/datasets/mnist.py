"""MNIST handwritten digits with label captions ("a handwritten seven."): image-text pairs.

The original IDX files (LeCun et al.), read with :func:`~polymodal.data.datasets.av_digits.read_idx`
from the folder :data:`~polymodal.data.datasets.av_digits.MNIST_INFO` locates.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.dataset import MultimodalDataset, TextRow, caption_row_id
from polymodal.data.datasets._common import check_modalities, locate, register_dataset
from polymodal.data.datasets.av_digits import MNIST_INFO, read_idx
from polymodal.data.decode import image_from_array
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import Sample

INFO = dataclasses.replace(
    MNIST_INFO,
    description="MNIST: 70,000 handwritten digits 0-9, each with label captions (image-text)",
)

#: The digits as words: the class names, and what captions say.
CLASS_NAMES: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
#: Default caption templates; ``{}`` is the digit's name.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a handwritten {}.",
    "the digit {}.",
    "a picture of the number {}.",
    "{} written by hand.",
    "a white {} on a black background.",
)
#: split -> (images file, labels file).
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class MNISTCaptions(MultimodalDataset):
    """MNIST digits as image-text examples: each image with captions naming its digit.

    Schema:

    ===== ===== =====================================================================
    name  kind  one example
    ===== ===== =====================================================================
    image image (3, S, S) float32, S = 28 or ``image_size``; the grey digit replicated
                to 3 channels and ImageNet-normalised unless ``normalize=False`` (then
                in [0, 1]), as :class:`~polymodal.data.datasets.av_digits.AVDigits`'
                images
    text  text  ``str``: the example's first caption (``captions[0]`` of its digit)
    ===== ===== =====================================================================

    Target: the digit 0-9 (classification, 10 classes named ``zero`` .. ``nine``).
    ``Sample.id`` is ``<split>-<row>`` (``train-59999``: row 59,999 of the train IDX
    files); ``groups()`` is the id (every image is its own group).  ``meta`` has ``row``
    and ``captions``: every template filled with the digit's name, so that joint training,
    embedding and search take one text row per caption (ids ``<id>#<k>``; see
    :func:`~polymodal.data.dataset.sample_text_rows`).

    Selection (deterministic, no randomness): the rows of ``split`` minus ``exclude``;
    with ``per_digit=n``, only the *last* ``n`` of those rows of each digit (in file
    order).  Examples are in file (row) order.  Taking images from the end keeps them
    apart from selections that start at the front, and ``exclude`` keeps them apart from
    any other (e.g. the MNIST images av_digits pairs with recordings:
    ``[row for _, row in load_dataset("av_digits", images_per_recording=3).mnist_pairs()]``).

    Only the selected images are kept in memory (uint8); images are decoded (resized,
    normalised) lazily in ``__getitem__``.
    """

    name = "mnist"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        image_size: int | None = None,
        normalize: bool = True,
        per_digit: int | None = None,
        exclude: Sequence[int] = (),
        captions: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
    ) -> None:
        templates = _check_args(split, image_size, normalize, per_digit, exclude, captions)
        self.modalities = check_modalities("mnist", modalities, ("image", "text"))
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        self.normalize = normalize
        self.per_digit = per_digit
        self.templates = templates
        size = 28 if image_size is None else image_size
        self.schema = Schema(
            (
                ModalitySpec(
                    "image",
                    ModalityKind.IMAGE,
                    shape=(3, size, size),
                    description="handwritten digit (MNIST)",
                ),
                ModalitySpec("text", ModalityKind.TEXT, description="a caption naming the digit"),
            ),
            TargetSpec("classification", 10, CLASS_NAMES, name="digit"),
        ).select(list(self.modalities))

        images_file, labels_file = IDX_FILES[split]
        labels = read_idx(self.root / labels_file)
        images = read_idx(self.root / images_file)
        if images.ndim != 3 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"MNIST file {self.root / images_file} has shape {images.shape}; expected "
                f"({labels.shape[0]}, 28, 28) to match its labels file. Re-download MNIST."
            )
        bad = [r for r in exclude if not 0 <= r < labels.shape[0]]
        if bad:
            raise ValueError(
                f"The 'exclude' parameter of mnist must hold rows of the {split} split, in "
                f"[0, {labels.shape[0]}); got {bad[:5]}."
            )
        keep = np.ones(labels.shape[0], dtype=bool)
        keep[np.asarray(list(exclude), dtype=np.int64)] = False
        if per_digit is not None:
            counts = np.bincount(labels[keep], minlength=10)  # (10,) images left per digit
            fewest = int(counts.argmin())
            if counts[fewest] < per_digit:
                raise ValueError(
                    f"The 'per_digit' parameter of mnist is {per_digit}, but the {split} "
                    f"split has only {counts[fewest]} images of digit {fewest} outside "
                    f"'exclude'; use at most {counts[fewest]}."
                )
            chosen = np.zeros_like(keep)
            for digit in range(10):
                pool = np.flatnonzero(keep & (labels == digit))
                chosen[pool[len(pool) - per_digit :]] = True
            keep = chosen
        self._rows = np.flatnonzero(keep)  # (N,) rows in file order
        self._labels = labels[self._rows].astype(np.int64)  # (N,)
        self._images = images[self._rows]  # (N, 28, 28) uint8

    def __len__(self) -> int:
        return len(self._rows)

    def _index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"mnist[{index}]: index out of range for {n} examples")
        return index % n

    def captions(self, digit: int) -> list[str]:
        """The captions of an image of ``digit``: each template with the digit's name."""
        return [t.format(CLASS_NAMES[digit]) for t in self.templates]

    def __getitem__(self, index: int) -> Sample:
        index = self._index(index)
        row = int(self._rows[index])
        digit = int(self._labels[index])
        captions = self.captions(digit)
        values: dict[str, Any] = {}
        if "image" in self.modalities:
            values["image"] = image_from_array(
                self._images[index],
                size=self.image_size,
                normalize=self.normalize,
                where=f"mnist[{index}], {self.split} row {row}",
            )
        if "text" in self.modalities:
            values["text"] = captions[0]
        return Sample(
            id=f"{self.split}-{row}",
            modalities=values,
            target=digit,
            meta={"row": row, "captions": captions},
        )

    def rows(self) -> list[int]:
        """The IDX row of every example, in order."""
        return [int(r) for r in self._rows]

    def ids(self) -> list[str]:
        """Example ids without decoding: ``<split>-<row>``."""
        return [f"{self.split}-{int(r)}" for r in self._rows]

    def targets(self) -> list[Any]:
        return [int(d) for d in self._labels]

    def groups(self) -> list[str]:
        return self.ids()

    def text_rows(self, modality: str, count: int | None = None) -> list[TextRow]:
        """:meth:`MultimodalDataset.text_rows` without decoding images: one row per caption."""
        if modality != "text" or "text" not in self.modalities:
            raise KeyError(
                f"mnist has no text modality {modality!r} here; it has {list(self.modalities)}."
            )
        n = len(self) if count is None else min(count, len(self))
        ids = self.ids()
        return [
            TextRow(caption_row_id(ids[j], k), text, j)
            for j in range(n)
            for k, text in enumerate(self.captions(int(self._labels[j])))
        ]


def _check_args(
    split: str,
    image_size: int | None,
    normalize: bool,
    per_digit: int | None,
    exclude: Sequence[int],
    captions: Sequence[str] | None,
) -> tuple[str, ...]:
    """Check the options; return the caption templates."""
    if split not in INFO.splits:
        raise ValueError(
            f"The 'split' parameter of mnist must be one of {list(INFO.splits)}; got {split!r}."
        )
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0
    ):
        raise ValueError(
            f"The 'image_size' parameter of mnist must be a positive int or None (28); got "
            f"{image_size!r}."
        )
    if not isinstance(normalize, bool):
        raise TypeError(f"The 'normalize' parameter of mnist must be a bool; got {normalize!r}.")
    if per_digit is not None and (
        isinstance(per_digit, bool) or not isinstance(per_digit, int) or per_digit < 1
    ):
        raise ValueError(
            f"The 'per_digit' parameter of mnist must be an int >= 1 (images of each digit, "
            f"taken from the end of the split) or None (all); got {per_digit!r}."
        )
    if isinstance(exclude, str | bytes) or not all(
        isinstance(r, int | np.integer) and not isinstance(r, bool) for r in exclude
    ):
        raise TypeError(
            f"The 'exclude' parameter of mnist must be a sequence of int rows; got {exclude!r:.80}."
        )
    if captions is None:
        return CAPTION_TEMPLATES
    if isinstance(captions, str) or not captions:
        raise ValueError(
            f"The 'captions' parameter of mnist must be a non-empty list of templates with "
            f"'{{}}' where the digit's name goes, e.g. ['a handwritten {{}}.']; got {captions!r}."
        )
    for t in captions:
        if not isinstance(t, str) or "{}" not in t:
            raise ValueError(
                f"The 'captions' parameter of mnist must hold templates with '{{}}' where the "
                f"digit's name goes, e.g. 'a handwritten {{}}.'; got {t!r}."
            )
    return tuple(captions)


@register_dataset(INFO)
def mnist(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int | None = None,
    normalize: bool = True,
    per_digit: int | None = None,
    exclude: Sequence[int] = (),
    captions: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
) -> MNISTCaptions:
    """MNIST images with label captions (see :class:`MNISTCaptions`).

    ``root`` is the folder holding the IDX files, or one holding ``mnist/``; without it,
    ``$POLYMODAL_DATA`` then the user cache are searched.  ``download=True`` fetches the
    files when they are missing.
    """
    _check_args(split, image_size, normalize, per_digit, exclude, captions)
    return MNISTCaptions(
        locate(INFO, root, download),
        split=split,
        image_size=image_size,
        normalize=normalize,
        per_digit=per_digit,
        exclude=exclude,
        captions=captions,
        modalities=modalities,
    )
