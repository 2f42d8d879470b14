"""The ``mnist`` data set (MNIST images with label captions) on the real IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.data.collate import collate
from polymodal.data.dataset import sample_text_rows
from polymodal.data.datasets import DATASETS, load_dataset
from polymodal.data.datasets.av_digits import AVDigits, read_idx
from polymodal.data.datasets.mnist import CAPTION_TEMPLATES, CLASS_NAMES, MNISTCaptions
from polymodal.data.decode import image_from_array


def mnist(**options: object) -> MNISTCaptions:
    ds = load_dataset("mnist", **options)  # type: ignore[arg-type]
    assert isinstance(ds, MNISTCaptions)
    return ds


@pytest.fixture(scope="module")
def train_labels(data_root: Path) -> np.ndarray:
    return read_idx(data_root / "mnist" / "train-labels-idx1-ubyte.gz")


def test_registered_with_image_and_text(data_root: Path) -> None:
    assert "mnist" in DATASETS
    ds = load_dataset("mnist", split="test")
    assert len(ds) == 10_000
    assert ds.schema.names == ["image", "text"]
    assert ds.schema["image"].shape == (3, 28, 28)
    target = ds.schema.target
    assert (target.task, target.num_classes, target.class_names) == (
        "classification",
        10,
        CLASS_NAMES,
    )
    assert CLASS_NAMES[0] == "zero" and CLASS_NAMES[9] == "nine"


def test_examples_match_the_idx_files(data_root: Path) -> None:
    ds = load_dataset("mnist", split="test", image_size=64)
    images = read_idx(data_root / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(data_root / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert ds.targets() == [int(v) for v in labels]
    for i in (0, 1, 9_999):
        s = ds[i]
        assert s.id == f"test-{i}" and s.meta["row"] == i and s.target == int(labels[i])
        image = s.modalities["image"]
        assert isinstance(image, torch.Tensor)
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        # the same ImageNet-normalised 3-channel image as av_digits' MNIST images
        torch.testing.assert_close(image, image_from_array(images[i], size=64))
    batch = collate([ds[0], ds[1]], ds.schema)
    assert tuple(batch["image"].values.shape) == (2, 3, 64, 64)  # type: ignore[union-attr]
    assert batch["text"].values == [ds[0].modalities["text"], ds[1].modalities["text"]]


def test_captions_name_the_digit_one_text_row_each(data_root: Path) -> None:
    ds = load_dataset("mnist", split="test")
    s = ds[0]  # a seven
    name = CLASS_NAMES[int(s.target)]  # type: ignore[arg-type]
    assert s.meta["captions"] == [t.format(name) for t in CAPTION_TEMPLATES]
    assert s.meta["captions"][0] == f"a handwritten {name}."
    assert s.modalities["text"] == s.meta["captions"][0]
    rows = ds.text_rows("text", 3)
    assert len(rows) == 3 * len(CAPTION_TEMPLATES)
    # the cheap text_rows is the library's captions-to-rows convention
    assert rows == [r for i in range(3) for r in sample_text_rows(ds[i], "text", i)]
    assert rows[1].id == "test-0#1" and rows[-1].example == 2

    own = load_dataset("mnist", split="test", captions=["digit {}", "{}!"])
    assert own[0].meta["captions"] == [f"digit {name}", f"{name}!"]
    assert [r.text for r in own.text_rows("text", 1)] == [f"digit {name}", f"{name}!"]


def test_selection_is_the_last_images_of_each_digit(train_labels: np.ndarray) -> None:
    ds = mnist(split="train", per_digit=20)
    assert len(ds) == 200
    rows = ds.rows()
    assert rows == sorted(rows)  # file order
    assert np.bincount(ds.targets(), minlength=10).tolist() == [20] * 10
    for digit in range(10):
        last = np.flatnonzero(train_labels == digit)[-20:].tolist()
        assert [r for r in rows if train_labels[r] == digit] == last
    assert ds.targets() == [int(train_labels[r]) for r in rows]
    assert ds.groups() == ds.ids() == [f"train-{r}" for r in rows]


def test_selection_is_deterministic_and_exclude_is_respected(train_labels: np.ndarray) -> None:
    first = mnist(split="train", per_digit=20)
    again = mnist(split="train", per_digit=20)
    assert first.ids() == again.ids()
    taken = first.rows()[::2]
    other = mnist(split="train", per_digit=20, exclude=taken)
    assert not set(other.rows()) & set(taken)
    assert np.bincount(other.targets(), minlength=10).tolist() == [20] * 10
    # av_digits' paired images, as the binding benchmark excludes them
    av = load_dataset("av_digits", split="train", images_per_recording=3)
    assert isinstance(av, AVDigits)
    paired = sorted({r for _, r in av.mnist_pairs()})
    apart = mnist(split="train", per_digit=200, exclude=paired)
    assert len(apart) == 2000 and not set(apart.rows()) & set(paired)


def test_modalities_option(data_root: Path) -> None:
    ds = load_dataset("mnist", split="test", modalities=["text"])
    assert ds.schema.names == ["text"] and set(ds[0].modalities) == {"text"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, r"split.*\['train', 'test'\].*'val'"),
        ({"image_size": 0}, r"'image_size' parameter of mnist.*got 0"),
        ({"per_digit": 0}, r"'per_digit' parameter of mnist.*got 0"),
        ({"per_digit": 1000}, r"'per_digit' parameter of mnist is 1000.*at most 892"),
        ({"exclude": [10_000]}, r"'exclude' parameter of mnist.*\[0, 10000\).*\[10000\]"),
        ({"captions": []}, r"'captions' parameter of mnist must be a non-empty list"),
        ({"captions": ["no slot"]}, r"'captions' parameter of mnist.*'no slot'"),
        ({"modalities": ["audio"]}, r"'modalities' parameter of mnist.*'audio'"),
    ],
)
def test_errors_name_the_parameter(kwargs: dict[str, object], match: str) -> None:
    kwargs = {"split": "test", **kwargs}
    with pytest.raises(ValueError, match=match):
        mnist(**kwargs)


def test_exclude_must_be_rows() -> None:
    with pytest.raises(TypeError, match=r"'exclude' parameter of mnist must be a sequence of int"):
        load_dataset("mnist", split="test", exclude="12")
