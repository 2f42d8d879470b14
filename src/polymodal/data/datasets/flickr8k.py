"""Flickr8k images with five captions each (image-text retrieval).

Images: github.com/RlNZLER/Image-Text-Matching @3d5693b (224x224 copy); captions and the
standard splits: github.com/edwardcruzcruz/Describiendo_imagenes_keras.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polymodal.data.dataset import MultimodalDataset, TextRow, caption_row_id
from polymodal.data.datasets._common import (
    DatasetInfo,
    check_modalities,
    locate,
    register_dataset,
)
from polymodal.data.decode import decode_image
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import Sample

INFO = DatasetInfo(
    name="flickr8k",
    description="Flickr8k: 8,091 images x 5 captions (image-text retrieval, no labels)",
    licence="research use only",
    upstream="images: github.com/RlNZLER/Image-Text-Matching@3d5693b; captions/splits: "
    "github.com/edwardcruzcruz/Describiendo_imagenes_keras",
    splits=("train", "val", "test", "all"),
    subdir="flickr8k",
    marker="Flickr8k.token.txt",
)

CAPTIONS_PER_IMAGE = 5
#: split name -> the standard list file (upstream calls validation "dev").
SPLIT_FILES: dict[str, str] = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


def read_captions(path: Path) -> dict[str, list[str]]:
    """``Flickr8k.token.txt`` (``<image>#<0-4>\\t<caption>``) -> image -> its captions by index.

    Images whose captions are incomplete are kept with ``""`` holes; the data set checks the
    images it uses.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Flickr8k file missing: {path}. Download again or fix root=.")
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            key, sep, caption = line.partition("\t")
            image, hsep, k = key.partition("#")
            if not sep or not hsep or not k.isdigit() or int(k) >= CAPTIONS_PER_IMAGE:
                raise ValueError(
                    f"Flickr8k file {path}, line {n + 1}: expected '<image>#<0-4><TAB><caption>'"
                    f", got {line[:80]!r}. Re-download the file."
                )
            caps = out.setdefault(image, [""] * CAPTIONS_PER_IMAGE)
            caps[int(k)] = caption.strip()
    return out


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"Flickr8k split list missing: {path}. Download again.")
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


class Flickr8k(MultimodalDataset):
    """Flickr8k (Hodosh et al., 2013): images and their five captions, for retrieval.

    Schema:

    ====== ===== ======================================================================
    name   kind  one example
    ====== ===== ======================================================================
    image  image (3, S, S) float32, S = ``image_size`` (224), ImageNet-normalised unless
                 ``normalize=False`` (then in [0, 1])
    text   text  ``str``: one caption (see ``caption`` and ``pairs``)
    ====== ===== ======================================================================

    No labels: ``Sample.target`` is ``None`` (batches have ``target=None``); the schema's
    :class:`~polymodal.data.modality.TargetSpec` has ``task="none"``.  What
    matches what is given by the image: ``groups()`` is the image name and every example's
    ``meta["image"]``, so captions of the same image share a group.

    Examples:

    * ``pairs=False`` (default): one example per image, ``id`` = image name, ``text`` = caption
      ``caption`` (``"first"`` = ``#0``, or an index 0-4); ``meta["captions"]`` holds all 5.
    * ``pairs=True``: one example per (image, caption), ``id`` = ``<image>#<k>``, 5 per image,
      in image order then caption order.

    Split rule: the standard lists ``Flickr_8k.{train,dev,test}Images.txt`` (dev is ``val``),
    6,000 / 1,000 / 1,000 images (30,000 / 5,000 / 5,000 pairs), in the lists' order; ``all``
    is train, val, test (8,000; the 91 images in no list are not used).  The usual evaluation:
    1,000 test images against their 5,000 captions, recall at 1/5/10.

    A listed image that is not in ``images/``, or that lacks one of its 5 captions, raises
    a ``FileNotFoundError``/``ValueError`` naming it; nothing is skipped.  Images are decoded
    lazily in ``__getitem__``.
    """

    name = "flickr8k"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        image_size: int = 224,
        caption: str | int = "first",
        pairs: bool = False,
        normalize: bool = True,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.caption_index = _check_args(split, image_size, caption, pairs)
        self.modalities = check_modalities("flickr8k", modalities, ("image", "text"))
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        self.pairs = pairs
        self.normalize = normalize
        self.schema = Schema(
            (
                ModalitySpec(
                    "image",
                    ModalityKind.IMAGE,
                    shape=(3, image_size, image_size),
                    description="photograph (Flickr)",
                ),
                ModalitySpec("text", ModalityKind.TEXT, description="an English caption"),
            ),
            TargetSpec("none", 0, name="none"),
        )
        self.schema = self.schema.select(list(self.modalities))
        captions = read_captions(self.root / "Flickr8k.token.txt")
        parts = ("train", "val", "test") if split == "all" else (split,)
        images: list[str] = []
        sides: list[str] = []
        for part in parts:
            names = _read_list(self.root / SPLIT_FILES[part])
            images += names
            sides += [part] * len(names)
        img_dir = self.root / "images"
        if not img_dir.is_dir():
            raise FileNotFoundError(f"Flickr8k images folder missing: {img_dir}. Download again.")
        present = set(os.listdir(img_dir))
        missing = [n for n in images if n not in present]
        if missing:
            raise FileNotFoundError(
                f"Flickr8k: {len(missing)} image(s) listed for split {split!r} are not in "
                f"{img_dir}: {', '.join(missing[:5])}. Download again (download=True "
                "re-fetches missing files) or restore them."
            )
        for n in images:
            caps = captions.get(n)
            if caps is None or not all(caps):
                have = 0 if caps is None else sum(1 for c in caps if c)
                raise ValueError(
                    f"Flickr8k: image {n} (split {split!r}) has {have} of "
                    f"{CAPTIONS_PER_IMAGE} captions in {self.root / 'Flickr8k.token.txt'}; "
                    "the caption file is incomplete. Re-download it."
                )
        self._images = images
        self._sides = sides
        self._captions = [captions[n] for n in images]

    def __len__(self) -> int:
        return len(self._images) * (CAPTIONS_PER_IMAGE if self.pairs else 1)

    def _locate(self, index: int) -> tuple[int, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"flickr8k[{index}]: index out of range for {n} examples")
        index %= n
        if self.pairs:
            return divmod(index, CAPTIONS_PER_IMAGE)
        return index, self.caption_index

    def __getitem__(self, index: int) -> Sample:
        i, k = self._locate(index)
        name = self._images[i]
        values: dict[str, Any] = {}
        if "image" in self.modalities:
            values["image"] = decode_image(
                self.root / "images" / name,
                size=self.image_size,
                normalize=self.normalize,
                where=f"flickr8k[{index}]",
            )
        if "text" in self.modalities:
            values["text"] = self._captions[i][k]
        return Sample(
            id=caption_row_id(name, k) if self.pairs else name,
            modalities=values,
            target=None,
            meta={
                "image": name,
                "caption_index": k,
                "split": self._sides[i],
                # one image, five texts: one text row per caption (sample_text_rows); in
                # pairs mode each example is already one (image, caption) pair
                **({} if self.pairs else {"captions": list(self._captions[i])}),
            },
        )

    def targets(self) -> list[Any]:
        return [None] * len(self)

    def groups(self) -> list[str]:
        if self.pairs:
            return [n for n in self._images for _ in range(CAPTIONS_PER_IMAGE)]
        return list(self._images)

    def ids(self) -> list[str]:
        """Example ids without decoding: image names (``<image>#<k>`` in pairs mode)."""
        return [
            caption_row_id(self._images[i], k) if self.pairs else self._images[i]
            for i, k in map(self._locate, range(len(self)))
        ]

    def text_rows(self, modality: str, count: int | None = None) -> list[TextRow]:
        """:meth:`MultimodalDataset.text_rows` without decoding images."""
        if modality != "text" or "text" not in self.modalities:
            raise KeyError(
                f"flickr8k has no text modality {modality!r} here; it has {list(self.modalities)}."
            )
        n = len(self) if count is None else min(count, len(self))
        if self.pairs:
            ids, texts = self.ids(), self.texts()
            return [TextRow(ids[j], texts[j], j) for j in range(n)]
        return [
            TextRow(caption_row_id(self._images[j], k), text, j)
            for j in range(n)
            for k, text in enumerate(self._captions[j])
        ]

    def images(self) -> list[str]:
        """The image names of the split, in order (one per image, whatever ``pairs``)."""
        return list(self._images)

    def captions(self) -> list[list[str]]:
        """The 5 captions of each image of :meth:`images`, without decoding anything."""
        return [list(c) for c in self._captions]

    def texts(self) -> list[str]:
        """The ``text`` of every example, in order, without decoding images."""
        return [self._captions[i][k] for i, k in map(self._locate, range(len(self)))]


def _check_args(split: str, image_size: int, caption: str | int, pairs: bool) -> int:
    if split not in INFO.splits:
        raise ValueError(
            f"The 'split' parameter of flickr8k must be one of {list(INFO.splits)}; got {split!r}."
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(
            f"The 'image_size' parameter of flickr8k must be a positive int; got {image_size!r}."
        )
    if not isinstance(pairs, bool):
        raise TypeError(f"The 'pairs' parameter of flickr8k must be a bool; got {pairs!r}.")
    if caption == "first":
        return 0
    if isinstance(caption, int) and not isinstance(caption, bool) and 0 <= caption < 5:
        if pairs:
            raise ValueError(
                f"flickr8k: caption={caption} selects one caption per image, but pairs=True "
                "yields every caption; pass one of them."
            )
        return caption
    raise ValueError(
        f"The 'caption' parameter of flickr8k must be 'first' or an index 0-4; got {caption!r}."
    )


@register_dataset(INFO)
def flickr8k(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int = 224,
    caption: str | int = "first",
    pairs: bool = False,
    normalize: bool = True,
    modalities: Sequence[str] | None = None,
) -> Flickr8k:
    """Flickr8k images + captions (see :class:`Flickr8k`); ``pairs=True`` for all 5 captions."""
    _check_args(split, image_size, caption, pairs)
    return Flickr8k(
        locate(INFO, root, download),
        split=split,
        image_size=image_size,
        caption=caption,
        pairs=pairs,
        normalize=normalize,
        modalities=modalities,
    )
