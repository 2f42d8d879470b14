"""The built-in mosi, av_digits and flickr8k loaders, on the real data (POLYMODAL_DATA)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from polymodal.data.datasets import load_dataset
from polymodal.data.datasets.av_digits import AVDigits, read_idx
from polymodal.data.datasets.flickr8k import Flickr8k
from polymodal.data.datasets.mosi import MOSI
from polymodal.data.sample import Sample


def _t(sample: Sample, name: str) -> torch.Tensor:
    value = sample.modalities[name]
    assert isinstance(value, torch.Tensor), f"{name} of {sample.id} is {type(value)}"
    return value


# ---------------------------------------------------------------------------------- mosi


@pytest.fixture(scope="module")
def mosi_all(data_root: Path) -> MOSI:
    ds = load_dataset("mosi", split="all", root=data_root)
    assert isinstance(ds, MOSI)
    return ds


def test_mosi_counts_and_speaker_independent_split(data_root: Path, mosi_all: MOSI) -> None:
    train = load_dataset("mosi", split="train", root=data_root)
    test = load_dataset("mosi", split="test", root=data_root)
    assert (len(train), len(test), len(mosi_all)) == (1447, 752, 2199)
    train_videos, test_videos = set(train.groups()), set(test.groups())
    assert (len(train_videos), len(test_videos)) == (62, 31)
    assert not train_videos & test_videos
    assert isinstance(train, MOSI) and isinstance(test, MOSI)
    assert mosi_all.ids() == train.ids() + test.ids()
    assert len(set(mosi_all.ids())) == 2199
    assert set(mosi_all.targets()) == {0, 1}


def test_mosi_joins_ids_transcripts_and_features(data_root: Path, mosi_all: MOSI) -> None:
    ids = mosi_all.ids()
    first = mosi_all[ids.index("03bSnISJMiM_1")]
    assert first.modalities["transcript"] == "ANYHOW IT WAS REALLY GOOD"
    assert first.target == 1
    assert first.meta == {"video": "03bSnISJMiM", "utterance": 1, "split": "test"}
    tenth = mosi_all[ids.index("03bSnISJMiM_10")]
    assert tenth.modalities["transcript"] == "THERE IS SAD PART"
    assert tenth.target == 0
    # Independent check of the row join: text_test.csv row j carries the transcripts row
    # number and the same 100 text features as text/text_test0.csv row j.
    j = ids.index("03bSnISJMiM_1") - 1447
    line = (data_root / "mosi/data/text_test.csv").read_text().splitlines()[j]
    cells = [float(c.strip('"')) for c in line.split(",")]
    transcripts = (data_root / "mosi/data/transcripts.csv").read_text().splitlines()
    assert transcripts[int(cells[0])].startswith('"03bSnISJMiM_1",')
    feats = first.modalities["text"]
    assert isinstance(feats, torch.Tensor) and feats.shape == (100,)
    assert torch.allclose(feats, torch.tensor(cells[1:], dtype=torch.float32), atol=1e-6)
    assert _t(first, "audio").shape == (73,)
    assert _t(first, "video").shape == (100,)


def test_mosi_videos_ordered_by_utterance_number(mosi_all: MOSI) -> None:
    videos = mosi_all.videos()
    assert len(videos) == 93
    ids = mosi_all.ids()
    order = [ids[i] for i in videos["03bSnISJMiM"]]
    assert order == [f"03bSnISJMiM_{n}" for n in range(1, 14)]
    for idx in videos.values():
        nums = [int(ids[i].rsplit("_", 1)[1]) for i in idx]
        assert nums == sorted(nums)
    assert sorted(i for idx in videos.values() for i in idx) == list(range(len(mosi_all)))


def test_mosi_modalities_option_and_batches(data_root: Path) -> None:
    ds = load_dataset("mosi", split="test", root=data_root, modalities=("transcript", "audio"))
    assert ds.schema.names == ["transcript", "audio"]
    batch = ds.batch([0, 1, 2])
    values = batch["audio"].values
    assert isinstance(values, torch.Tensor) and values.shape == (3, 73)
    assert len(batch["transcript"].values) == 3
    assert batch.target is not None and batch.target.dtype == torch.long
    assert ds.schema.target.class_names == ("negative", "positive")


def test_mosi_rejects_bad_options(data_root: Path) -> None:
    with pytest.raises(ValueError, match=r"among \['text', .*got 'txt'.*Did you mean 'text'"):
        load_dataset("mosi", split="test", root=data_root, modalities=("txt",))
    with pytest.raises(TypeError, match="sequence of names"):
        load_dataset("mosi", split="test", root=data_root, modalities="text")
    with pytest.raises(ValueError, match=r"splits \['train', 'test', 'all'\]; got split='dev'"):
        load_dataset("mosi", split="dev", root=data_root)


def test_mosi_label_disagreement_is_an_error(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "mosi" / "data"
    dst = tmp_path / "mosi" / "data"
    (dst / "audio").mkdir(parents=True)
    shutil.copy(src / "transcripts.csv", dst / "transcripts.csv")
    shutil.copy(src / "text_test.csv", dst / "text_test.csv")
    lines = (src / "audio" / "audio_test0.csv").read_text().splitlines(keepends=True)
    head, label = lines[0].rstrip("\r\n").rsplit(",", 1)
    flipped = '"1"' if label.strip('"') == "0" else '"0"'
    lines[0] = f"{head},{flipped}\r\n"
    (dst / "audio" / "audio_test0.csv").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"labels disagree: 1 rows of .*audio_test0\.csv.*row 0"):
        load_dataset("mosi", split="test", root=tmp_path, modalities=("audio",))


# ----------------------------------------------------------------------------- av_digits


@pytest.fixture(scope="module")
def av_all(data_root: Path) -> AVDigits:
    ds = load_dataset("av_digits", split="all", root=data_root)
    assert isinstance(ds, AVDigits)
    return ds


def test_av_digits_counts_and_speaker_held_out_split(data_root: Path, av_all: AVDigits) -> None:
    train = load_dataset("av_digits", split="train", root=data_root)
    assert isinstance(train, AVDigits)
    n_wav = len(os.listdir(data_root / "fsdd" / "recordings"))
    assert n_wav == len(av_all) == 3000
    assert len(train) == 2000
    assert set(train.groups()) == {"george", "jackson", "lucas", "nicolas"}
    assert set(av_all.groups()[2000:]) == {"theo", "yweweler"}
    assert sorted(av_all.targets()) == sorted(d for d in range(10) for _ in range(300))
    # Pairs do not depend on the split asked for.
    assert train.mnist_pairs() == av_all.mnist_pairs()[:2000]


def test_av_digits_pairs_same_digit_and_keep_mnist_sides_apart(av_all: AVDigits) -> None:
    assert av_all.mnist_labels() == av_all.targets()
    sides = [side for side, _ in av_all.mnist_pairs()]
    speakers = av_all.groups()
    for side, spk in zip(sides, speakers, strict=True):
        assert side == ("test" if spk in ("theo", "yweweler") else "train")
    assert len(set(av_all.mnist_pairs())) == 3000  # no MNIST image used twice


def test_av_digits_pairing_is_seeded(data_root: Path, av_all: AVDigits) -> None:
    again = load_dataset("av_digits", split="test", root=data_root, seed=0)
    other = load_dataset("av_digits", split="test", root=data_root, seed=1)
    assert isinstance(again, AVDigits) and isinstance(other, AVDigits)
    assert again.mnist_pairs() == av_all.mnist_pairs()[2000:]
    assert other.mnist_pairs() != again.mnist_pairs()
    assert other.mnist_labels() == other.targets()


def test_av_digits_decodes_audio_and_image(data_root: Path, av_all: AVDigits) -> None:
    s = av_all[2500]
    path = Path(s.meta["path"])
    assert s.id == path.stem and s.id.startswith(f"{s.target}_{s.meta['speaker']}_")
    audio = s.modalities["audio"]
    assert isinstance(audio, torch.Tensor) and audio.dim() == 1
    assert audio.shape[0] == sf.info(str(path)).frames  # 8 kHz: no resampling
    image = s.modalities["image"]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 28, 28)
    raw = read_idx(data_root / "mnist" / "t10k-images-idx3-ubyte.gz")[s.meta["mnist_index"]]
    gray = load_dataset(
        "av_digits",
        split="test",
        root=data_root,
        grayscale=True,
        normalize=False,
        image_size=32,
        sample_rate=16000,
    )
    g = gray[500]
    assert g.id == s.id
    assert _t(g, "image").shape == (1, 32, 32)
    assert _t(g, "audio").shape[0] == pytest.approx(2 * audio.shape[0], abs=2)
    plain = load_dataset("av_digits", split="test", root=data_root, normalize=False)[500]
    expected = torch.from_numpy(raw.astype(np.float32) / 255.0)
    assert torch.allclose(_t(plain, "image")[0], expected)
    batch = av_all.batch([0, 2999])
    values = batch["image"].values
    assert isinstance(values, torch.Tensor) and values.shape == (2, 3, 28, 28)
    assert batch["audio"].lengths is not None and batch.target is not None
    assert batch.target.tolist() == [av_all.targets()[0], av_all.targets()[2999]]


def test_av_digits_rejects_bad_options(data_root: Path) -> None:
    with pytest.raises(ValueError, match=r"'test_speakers'.*\['bob'\].*no recordings"):
        load_dataset("av_digits", split="test", root=data_root, test_speakers=("bob",))
    with pytest.raises(ValueError, match="must hold out 1 to 5"):
        load_dataset("av_digits", split="test", root=data_root, test_speakers=())
    with pytest.raises(ValueError, match=r"'sample_rate'.*positive int"):
        load_dataset("av_digits", split="test", root=data_root, sample_rate=0)
    custom = load_dataset("av_digits", split="test", root=data_root, test_speakers=["george"])
    assert set(custom.groups()) == {"george"} and len(custom) == 500


# ------------------------------------------------------------------------------ flickr8k


def test_flickr8k_counts_splits_and_captions(data_root: Path) -> None:
    sets = {s: load_dataset("flickr8k", split=s, root=data_root) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in sets.items()} == {"train": 6000, "val": 1000, "test": 1000}
    names = {s: set(d.groups()) for s, d in sets.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    for d in sets.values():
        assert isinstance(d, Flickr8k)
        assert all(len(c) == 5 and all(c) for c in d.captions())
        assert d.targets() == [None] * len(d)
    pairs = load_dataset("flickr8k", split="test", root=data_root, pairs=True)
    assert len(pairs) == 5000
    assert len(load_dataset("flickr8k", split="all", root=data_root)) == 8000
    assert isinstance(pairs, Flickr8k)
    test = sets["test"]
    assert isinstance(test, Flickr8k)
    assert pairs.texts()[:5] == test.captions()[0]
    assert pairs.groups()[:5] == [test.images()[0]] * 5


def test_flickr8k_batch_and_caption_choice(data_root: Path) -> None:
    ds = load_dataset("flickr8k", split="val", root=data_root, caption=3)
    batch = ds.batch([0, 1])
    values = batch["image"].values
    assert isinstance(values, torch.Tensor) and values.shape == (2, 3, 224, 224)
    assert batch.target is None
    s = ds[1]
    assert s.modalities["text"] == s.meta["captions"][3] and len(s.meta["captions"]) == 5
    assert batch["text"].values[1] == s.modalities["text"]
    small = load_dataset("flickr8k", split="val", root=data_root, image_size=64, pairs=True)
    p = small[7]
    assert p.id == f"{s.id}#2" and p.modalities["text"] == s.meta["captions"][2]
    assert _t(p, "image").shape == (3, 64, 64)
    with pytest.raises(ValueError, match=r"'caption'.*'first' or an index 0-4; got 5"):
        load_dataset("flickr8k", split="val", root=data_root, caption=5)


def test_flickr8k_missing_image_is_named(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "flickr8k"
    for name in ("Flickr8k.token.txt", "Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt"):
        (tmp_path / name).symlink_to(src / name)
    listed = (src / "Flickr_8k.testImages.txt").read_text().split()[:2]
    (tmp_path / "Flickr_8k.testImages.txt").write_text("\n".join(listed) + "\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / listed[0]).symlink_to(src / "images" / listed[0])
    with pytest.raises(FileNotFoundError, match=rf"1 image\(s\) listed.*{listed[1]}"):
        load_dataset("flickr8k", split="test", root=tmp_path)
    (tmp_path / "images" / listed[1]).symlink_to(src / "images" / listed[1])
    assert len(load_dataset("flickr8k", split="test", root=tmp_path)) == 2


def test_av_digits_images_per_recording_repeats_train_recordings(
    data_root: Path, av_all: AVDigits
) -> None:
    k = 3
    many = load_dataset("av_digits", split="all", root=data_root, images_per_recording=k)
    assert isinstance(many, AVDigits)
    assert len(many) == 2000 * k + 1000
    # Each train recording appears k times in a row, test recordings once.
    assert many.targets()[: 2000 * k] == [t for t in av_all.targets()[:2000] for _ in range(k)]
    assert many.groups()[2000 * k :] == av_all.groups()[2000:]
    assert many.mnist_labels() == many.targets()
    pairs = many.mnist_pairs()
    assert len(set(pairs)) == len(pairs)  # every copy gets its own MNIST image
    for (side, _), spk in zip(pairs, many.groups(), strict=True):
        assert side == ("test" if spk in ("theo", "yweweler") else "train")
    # The test side keeps its one-image pairs, whatever the train side does.
    assert pairs[2000 * k :] == av_all.mnist_pairs()[2000:]
    first, second = many[0], many[1]
    assert (first.id, second.id) == (f"{av_all[0].id}#0", f"{av_all[0].id}#1")
    assert (first.meta["copy"], second.meta["copy"]) == (0, 1)
    assert torch.equal(_t(first, "audio"), _t(second, "audio"))
    assert not torch.equal(_t(first, "image"), _t(second, "image"))


def test_av_digits_images_per_recording_is_seeded_and_splits_agree(data_root: Path) -> None:
    opts = {"images_per_recording": 2, "test_images_per_recording": 2}
    train = load_dataset("av_digits", split="train", root=data_root, **opts)
    test = load_dataset("av_digits", split="test", root=data_root, **opts)
    again = load_dataset("av_digits", split="all", root=data_root, **opts)
    other = load_dataset("av_digits", split="train", root=data_root, seed=1, **opts)
    assert isinstance(train, AVDigits) and isinstance(test, AVDigits)
    assert isinstance(again, AVDigits) and isinstance(other, AVDigits)
    assert (len(train), len(test)) == (4000, 2000)
    assert again.mnist_pairs() == train.mnist_pairs() + test.mnist_pairs()
    assert other.mnist_pairs() != train.mnist_pairs()
    assert other.mnist_labels() == other.targets()
    assert {s for s, _ in train.mnist_pairs()} == {"train"}
    assert {s for s, _ in test.mnist_pairs()} == {"test"}
    assert test[1].id.endswith("#1") and test.mnist_labels() == test.targets()


def test_av_digits_rejects_bad_images_per_recording(data_root: Path) -> None:
    with pytest.raises(ValueError, match=r"'images_per_recording'.*int >= 1.*got 0"):
        load_dataset("av_digits", split="train", root=data_root, images_per_recording=0)
    with pytest.raises(ValueError, match=r"'test_images_per_recording'.*digit 5.*at most 8"):
        load_dataset("av_digits", split="test", root=data_root, test_images_per_recording=9)


@pytest.mark.parametrize(
    ("name", "options", "pick"),
    [
        ("mosi", {}, "audio"),
        ("av_digits", {}, "image"),
        ("flickr8k", {"split": "test"}, "text"),
        ("har_phone_watch", {}, "watch"),
    ],
)
def test_every_builtin_selects_modalities_the_same_way(
    data_root: Path, name: str, options: dict[str, str], pick: str
) -> None:
    kwargs = {"split": "train", "root": data_root, **options}
    full = load_dataset(name, **kwargs)
    one = load_dataset(name, **kwargs, modalities=[pick])
    assert one.schema.names == [pick] and pick in full.schema.names
    assert set(one[0].modalities) == {pick} and len(one) == len(full)
    with pytest.raises(ValueError, match=rf"'modalities' parameter of {name} must be among"):
        load_dataset(name, **kwargs, modalities=["nope"])
    with pytest.raises(ValueError, match=rf"'modalities' parameter of {name} repeats"):
        load_dataset(name, **kwargs, modalities=[pick, pick])
