from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.data import Batch, DatasetNotFoundError, group_split
from polymodal.data.datasets._common import DATASETS, INFOS, load_dataset
from polymodal.data.datasets.har_phone_watch import (
    CHANNELS,
    CLASSES,
    TEST_SUBJECTS,
    HARPhoneWatch,
    har_phone_watch,
)
from polymodal.data.decode import DecodeError, decode_file


@pytest.fixture(scope="module")
def har_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private user cache for this module (the processed .npz goes there)."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("xdg_cache")
    mp.setenv("XDG_CACHE_HOME", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def har_all(har_cache: Path, data_root: Path) -> HARPhoneWatch:
    """All 23 subjects; the first build of the module (cold), cached for the others."""
    return har_phone_watch(split="all", root=data_root)


def _subjects(ds: HARPhoneWatch) -> set[str]:
    return set(ds.groups())


def test_registered() -> None:
    assert "har_phone_watch" in DATASETS
    info = INFOS["har_phone_watch"]
    assert info.splits == ("train", "test", "all")
    assert info.licence == "CC BY 4.0"


def test_all_subjects_and_cache_file(har_all: HARPhoneWatch, har_cache: Path) -> None:
    assert _subjects(har_all) == {f"s{i:02d}" for i in range(1, 24)}
    assert len({har_all[i].meta["recording"] for i in range(len(har_all))}) == 223
    cached = list((har_cache / "polymodal" / "processed").glob("har_phone_watch-*.npz"))
    assert len(cached) == 1
    assert not list(cached[0].parent.glob("*.tmp"))  # the atomic write left no temp file


def test_splits_are_disjoint_by_subject(har_all: HARPhoneWatch, data_root: Path) -> None:
    train = load_dataset("har_phone_watch", split="train", root=data_root)
    test = load_dataset("har_phone_watch", split="test", root=data_root)
    assert isinstance(train, HARPhoneWatch) and isinstance(test, HARPhoneWatch)
    assert _subjects(test) == set(TEST_SUBJECTS)
    assert _subjects(train) & _subjects(test) == set()
    assert _subjects(train) | _subjects(test) == _subjects(har_all)
    assert len(train) + len(test) == len(har_all)
    tr_idx, va_idx = group_split(train.groups(), val_fraction=0.2, seed=0)
    groups = train.groups()
    assert {groups[i] for i in tr_idx} & {groups[i] for i in va_idx} == set()
    for ds in (train, test):
        counts = ds.class_counts()
        assert list(counts) == list(CLASSES)  # every class present, in class-index order
        assert all(c > 0 for c in counts.values())


def test_sample_layout(har_all: HARPhoneWatch) -> None:
    s = har_all[10]
    assert set(s.modalities) == {"phone", "watch"}
    for dev in ("phone", "watch"):
        x = s.modalities[dev]
        assert isinstance(x, torch.Tensor)
        assert x.shape == (100, 6) and x.dtype == torch.float32
        ts = s.timestamps[dev]
        assert ts.shape == (100,)
        assert torch.allclose(ts[1:] - ts[:-1], torch.full((99,), 0.02, dtype=torch.float64))
    assert re.fullmatch(r"s\d\d_\d\d@\d+\.\d+", s.id)
    assert s.id == f"{s.meta['recording']}@{s.meta['start']!r}"
    assert s.meta["recording"].startswith(s.meta["subject"] + "_")
    assert float(s.timestamps["phone"][0]) == s.meta["start"]
    assert isinstance(s.target, int) and 0 <= s.target < len(CLASSES)
    assert har_all.schema.names == ["phone", "watch"]
    assert har_all.schema["phone"].sample_rate == 50.0
    assert har_all.schema.target.class_names == CLASSES
    labels = np.array(har_all.targets())
    assert labels.min() >= 0 and labels.max() < len(CLASSES)
    with pytest.raises(IndexError, match="out of range"):
        har_all[len(har_all)]


def test_schema_records_what_predict_must_match(
    har_all: HARPhoneWatch, data_root: Path, tmp_path: Path
) -> None:
    spec = har_all.schema["phone"]
    assert (spec.channels, spec.time_unit, spec.length) == (CHANNELS, "ms", 100)
    raw = data_root / "har_phone_watch" / "DATA" / "s01" / "s01_01_sp.csv"
    # an upstream recording at its own ~100 Hz is named, never read as the 50 Hz grid
    with pytest.raises(DecodeError, match=r"imply 102\.5 Hz \(1351 rows over .* trained at 50 Hz"):
        decode_file(raw, "timeseries", spec)
    # every other row of it: 50 Hz, its columns reordered, read by name
    lines = raw.read_text().splitlines()
    header = lines[0].split(",")
    order = [header.index(c) for c in ("timestamp", *reversed(CHANNELS))]
    rows = [[r.split(",")[j] for j in order] for r in lines[1:201:2]]
    path = tmp_path / "window.csv"
    path.write_text("\n".join(",".join(r) for r in [[header[j] for j in order], *rows]) + "\n")
    ts = decode_file(path, "timeseries", spec)
    first = [float(rows[0][1 + CHANNELS[::-1].index(c)]) for c in CHANNELS]
    assert ts.columns == list(CHANNELS)  # type: ignore[union-attr]
    assert ts.values[0].tolist() == pytest.approx(first)  # type: ignore[union-attr]


def test_loader_collates(har_all: HARPhoneWatch) -> None:
    batch = next(iter(har_all.loader(batch_size=8)))
    assert isinstance(batch, Batch)
    for dev in ("phone", "watch"):
        assert batch[dev].values.shape == (8, 100, 6)
        assert batch[dev].present.all()
        assert batch[dev].lengths.tolist() == [100] * 8
    assert batch.target is not None and batch.target.shape == (8,)
    assert batch.target.dtype == torch.long


def test_window_labels_match_raw_phone_rows(har_all: HARPhoneWatch, data_root: Path) -> None:
    """A window's label and purity agree with the raw phone rows inside it."""
    folder = data_root / "har_phone_watch" / "DATA" / "s01"
    sp = np.loadtxt(folder / "s01_01_sp.csv", delimiter=",", skiprows=1, dtype=str)
    sw = np.loadtxt(folder / "s01_01_sw.csv", delimiter=",", skiprows=1, usecols=6)
    t_sp = sp[:, 6].astype(np.float64)
    overlap_start = max(t_sp[0], sw[0])  # ms; window starts count from here
    windows = [s for s in (har_all[i] for i in range(len(har_all))) if s.id.startswith("s01_01@")]
    assert len(windows) >= 8  # a 13 s recording, 2 s windows every 1 s
    checked = 0
    for s in windows:
        lo = overlap_start + 1000 * s.meta["start"]
        inside = sp[(t_sp >= lo) & (t_sp < lo + 2000), 7]
        names, counts = np.unique(inside, return_counts=True)
        share = counts.max() / counts.sum()
        assert abs(share - s.meta["purity"]) < 0.1, s.id
        if share >= 0.6:  # a clear majority cannot flip by resampling
            assert isinstance(s.target, int)
            assert CLASSES[s.target] == names[counts.argmax()], s.id
            checked += 1
    assert checked >= 3


def test_options(har_all: HARPhoneWatch, data_root: Path) -> None:
    watch = har_phone_watch(split="all", root=data_root, modalities=("watch",))
    assert watch.schema.names == ["watch"]
    assert set(watch[0].modalities) == {"watch"}
    assert len(watch) == len(har_all)
    assert torch.equal(watch[3].modalities["watch"], har_all[3].modalities["watch"])
    pure = har_phone_watch(split="all", root=data_root, min_purity=1.0)
    assert 0 < len(pure) < len(har_all)
    assert all(pure[i].meta["purity"] == 1.0 for i in range(0, len(pure), 25))


def test_bad_arguments(data_root: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown split 'tset'.*Did you mean 'test'"):
        har_phone_watch(split="tset", root=data_root)
    with pytest.raises(TypeError, match=r"'modalities' parameter of har_phone_watch .*\['phone'\]"):
        har_phone_watch(root=data_root, modalities="phone")
    with pytest.raises(ValueError, match=r"among \['phone', 'watch'\]; got 'wrist'"):
        har_phone_watch(root=data_root, modalities=("phone", "wrist"))
    with pytest.raises(ValueError, match=r"rate must be a positive number, got 0"):
        har_phone_watch(root=data_root, rate=0)
    with pytest.raises(ValueError, match=r"min_purity must be in \[0, 1\]"):
        har_phone_watch(root=data_root, min_purity=1.5)


def test_wrong_root_lists_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"Looked for 'DATA/subjects_info.csv'") as e:
        har_phone_watch(root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "har_phone_watch" / "DATA" / "subjects_info.csv") in str(
        e.value
    )


@pytest.fixture
def mini_root(tmp_path: Path, data_root: Path) -> Path:
    """A copy of 3 recordings (2 subjects: s01 train, s04 test) in a temporary folder."""
    src = data_root / "har_phone_watch" / "DATA"
    dst = tmp_path / "har_phone_watch" / "DATA"
    for rec in ("s01_01", "s01_02", "s04_01"):
        (dst / rec[:3]).mkdir(parents=True, exist_ok=True)
        for dev in ("sp", "sw"):
            shutil.copy2(src / rec[:3] / f"{rec}_{dev}.csv", dst / rec[:3])
    for name in ("subjects_info.csv", "executions_info.csv"):
        shutil.copy2(src / name, dst / name)
    return tmp_path


def test_cache_is_keyed_by_source_files(
    mini_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    processed = tmp_path / "cache" / "polymodal" / "processed"
    first = har_phone_watch(split="all", root=mini_root)
    assert _subjects(first) == {"s01", "s04"}
    assert _subjects(har_phone_watch(split="test", root=mini_root)) == {"s04"}
    assert len(list(processed.glob("*.npz"))) == 1
    fresh = har_phone_watch(split="all", root=mini_root, cache=False)
    assert fresh.targets() == first.targets()
    assert torch.equal(fresh[5].modalities["phone"], first[5].modalities["phone"])
    # Another configuration and a changed source file each get their own entry.
    har_phone_watch(split="all", root=mini_root, hop=0.5)
    assert len(list(processed.glob("*.npz"))) == 2
    changed = mini_root / "har_phone_watch" / "DATA" / "s04" / "s04_01_sw.csv"
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    har_phone_watch(split="all", root=mini_root)
    assert len(list(processed.glob("*.npz"))) == 3


def test_damaged_cache_is_rebuilt(
    mini_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    good = har_phone_watch(split="all", root=mini_root)
    (path,) = (tmp_path / "cache" / "polymodal" / "processed").glob("*.npz")
    path.write_bytes(b"not a zip file")
    again = har_phone_watch(split="all", root=mini_root)
    assert again.targets() == good.targets()
    with np.load(path) as z:  # rewritten whole
        assert z["label"].shape == (len(good),)


def test_unknown_label_names_the_file(mini_root: Path, tmp_path: Path) -> None:
    bad = mini_root / "har_phone_watch" / "DATA" / "s01" / "s01_02_sp.csv"
    lines = bad.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",JUMPING"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"s01_02_sp.csv: could not parse.*label in \['WALKING'"):
        har_phone_watch(split="all", root=mini_root, cache=False)


def test_videos_are_recordings_in_time_order(har_all: HARPhoneWatch) -> None:
    """``videos()``: every window once, grouped by its recording, in time order; what a
    context model (``task: context``) reads as one sequence."""
    from polymodal.data.context import VideoDataset

    videos = har_all.videos()
    assert sorted(i for idx in videos.values() for i in idx) == list(range(len(har_all)))
    assert len(videos) == 223
    for rec, idx in list(videos.items())[::20]:
        samples = [har_all[i] for i in idx]
        assert {s.meta["recording"] for s in samples} == {rec}
        starts = [s.meta["start"] for s in samples]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
    # validation carved by subject, as the supervised trainer carves it: whole recordings
    train, val = VideoDataset(har_all).split_videos(0.2, seed=0)
    groups = har_all.groups()
    subjects = {
        side: {groups[i] for i in v.utterance_indices()} for side, v in (("t", train), ("v", val))
    }
    assert subjects["t"].isdisjoint(subjects["v"]) and len(subjects["v"]) >= 4
    assert train.num_utterances + val.num_utterances == len(har_all)
