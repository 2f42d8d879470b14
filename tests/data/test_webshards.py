"""WebDataset shards: exact round trips of every modality, rank×worker parts, seeded order,
damaged shards, and training on shards as on the source."""

from __future__ import annotations

import json
import random
import shutil
import tarfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
import yaml

from polymodal.cli.main import main
from polymodal.data import (
    ModalityKind,
    ModalitySpec,
    MultimodalDataset,
    Sample,
    Schema,
    TargetSpec,
)
from polymodal.data.datasets import load_dataset
from polymodal.data.manifest import ManifestDataset
from polymodal.data.sample import Batch
from polymodal.data.sources import load_source
from polymodal.data.webshards import (
    ShardDataset,
    ShardError,
    ShardStream,
    read_index,
    write_shards,
)
from polymodal.data.webshards.stream import distributed_rank
from polymodal.inference import data_loader
from polymodal.training.config import DataConfig
from tests.conftest import require

CSV = """\
id,audio,image,video,series,emb,caption,age,height,label,split,group
a,a.wav,a.jpg,v.mp4,s.csv,e.npy,a child climbs,31,1.80,zero,train,george
b,b.wav,,v.mp4,,e.npy,"a dog runs, fast",27,,one,train,george
c,,a.jpg,,s.csv,,,40,1.70,zero,train,jackson
d,b.wav,a.jpg,v.mp4,s.csv,e.npy,two dogs play,22,1.60,one,test,jackson
"""


def _video(path: Path, frames: int = 6) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            img = np.full((32, 32, 3), 30 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture
def manifest(tmp_path: Path, data_root: Path) -> Path:
    """Audio, image, video, time series, features, text and tabular, some cells empty."""
    shutil.copy(data_root / "fsdd" / "recordings" / "0_george_0.wav", tmp_path / "a.wav")
    shutil.copy(data_root / "fsdd" / "recordings" / "1_jackson_0.wav", tmp_path / "b.wav")
    shutil.copy(data_root / "flickr8k" / "images" / "1000268201_693b08cb0e.jpg", tmp_path / "a.jpg")
    _video(tmp_path / "v.mp4")
    rows = "\n".join(f"{1000 + 20 * i},{i * 0.5},{-i}" for i in range(30))
    (tmp_path / "s.csv").write_text("timestamp,x,y\n" + rows + "\n")
    np.save(tmp_path / "e.npy", np.arange(5, dtype=np.float32) / 7)
    path = tmp_path / "m.csv"
    path.write_text(CSV)
    return path


def _same_value(a: Any, b: Any) -> bool:
    if a is None or isinstance(a, str | int | float):
        return type(a) is type(b) and a == b
    return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)


def assert_same_sample(a: Sample, b: Sample) -> None:
    assert (a.id, a.meta) == (b.id, b.meta)
    assert _same_value(a.target, b.target), (a.target, b.target)
    assert a.modalities.keys() == b.modalities.keys()
    for name, value in a.modalities.items():
        assert _same_value(value, b.modalities[name]), (a.id, name)
    assert a.timestamps.keys() == b.timestamps.keys()
    for name, ts in a.timestamps.items():
        assert _same_value(ts, b.timestamps[name])


def assert_same_batch(a: Batch, b: Batch) -> None:
    assert a.ids == b.ids and list(a.modalities) == list(b.modalities)
    assert a.target is not None and b.target is not None and torch.equal(a.target, b.target)
    for name, mb in a.modalities.items():
        other = b[name]
        assert torch.equal(mb.present, other.present)
        if isinstance(mb.values, list):
            assert mb.values == other.values
        else:
            assert isinstance(other.values, torch.Tensor) and torch.equal(mb.values, other.values)


def test_every_modality_round_trips_exactly_by_index_and_by_stream(
    manifest: Path, tmp_path: Path
) -> None:
    require("webdataset")
    source = ManifestDataset(manifest, split="train")
    kinds = {m.kind for m in source.schema.modalities}
    assert kinds == set(ModalityKind)  # every kind
    index = write_shards(source, tmp_path / "sh", shard_size=2)
    assert [s["name"] for s in index["shards"]] == ["train-000000.tar", "train-000001.tar"]
    assert index["count"] == 3 and index["schema"] == source.schema.to_dict()
    assert index["groups"] == ["george", "george", "jackson"]
    by_index = ShardDataset(tmp_path / "sh", "train")
    streamed = list(ShardStream(tmp_path / "sh", "train"))
    assert by_index.schema == source.schema and len(by_index) == 3
    assert by_index.targets() == source.targets() and by_index.groups() == source.groups()
    for i in range(3):
        assert_same_sample(source[i], by_index[i])
        assert_same_sample(source[i], streamed[i])
    assert by_index[1].modalities["image"] is None and by_index[2].modalities["audio"] is None
    assert by_index[2].modalities["caption"] is None and by_index[1].modalities["tabular"] is None
    assert "series" in by_index[0].timestamps  # a time series keeps its clock
    # the library's own loader and collate give the same batches
    stream = ShardStream(tmp_path / "sh", "train")
    for a, b, c in zip(
        data_loader(source, 2), data_loader(by_index, 2), data_loader(stream, 2), strict=True
    ):
        assert_same_batch(a, b)
        assert_same_batch(a, c)


class Toy(MultimodalDataset):
    """``n`` examples: multilabel targets, (T, D) float64 features, int16 audio, text."""

    def __init__(self, n: int = 10) -> None:
        self.n, self.name, self.split = n, "toy", "train"
        self.schema = Schema(
            (
                ModalitySpec("seq", ModalityKind.FEATURES, (3,), sequence=True),
                ModalitySpec("Wave", ModalityKind.AUDIO, (), sample_rate=8000),
                ModalitySpec("note", ModalityKind.TEXT),
            ),
            TargetSpec("multilabel", 4),
        )

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = torch.Generator().manual_seed(i)
        mods: dict[str, Any] = {
            "seq": torch.randn(2 + i % 3, 3, generator=g, dtype=torch.float64),
            "Wave": None if i % 4 == 3 else torch.arange(5 + i, dtype=torch.int16),
            "note": f"é {i}",
        }
        target = (torch.arange(4) % (1 + i % 3) == 0).float()
        return Sample(f"x.{i}/v", mods, target, meta={"group": f"g{i % 3}"})

    def groups(self) -> list[str]:
        return [f"g{i % 3}" for i in range(self.n)]


def test_multilabel_dtypes_odd_ids_and_names_round_trip(tmp_path: Path) -> None:
    toy = Toy()
    write_shards(toy, tmp_path, shard_size=4)
    back = ShardDataset(tmp_path, "train")
    for i in range(len(toy)):
        assert_same_sample(toy[i], back[i])
    assert torch.equal(
        torch.stack(back.targets()), torch.stack([toy[i].target for i in range(len(toy))])
    )


def test_regression_targets_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    rows = [{"id": f"r{i}", "f": [i, i / 3], "label": i / 7 + 0.01} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = ManifestDataset(path)
    assert source.schema.target.task == "regression"
    write_shards(source, tmp_path / "sh")
    back = load_source(str(tmp_path / "sh"), split="all")  # a shard folder is a source
    assert isinstance(back, ShardDataset) and back.targets() == source.targets()
    for i in range(5):
        assert_same_sample(source[i], back[i])


def test_a_builtin_data_set_round_trips_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "sh"
    argv = ["shards", "write", "av_digits", "-o", str(out), "--split", "train", "--limit", "5"]
    assert main([*argv, "--shard-size", "2"]) == 0
    source = load_dataset("av_digits", split="train").subset(range(5))
    back = ShardDataset(out, "train")
    assert len(back.ids()) == 5 and back.name == "av_digits"
    assert back.targets() == source.targets() and back.groups() == source.groups()
    for i in range(5):
        assert_same_sample(source[i], back[i])
    assert main([*argv, "--shard-size", "2"]) == 0  # the same set again: nothing changes
    assert main([*argv, "--shard-size", "3"]) == 2  # a different set needs --overwrite
    assert main([*argv, "--shard-size", "3", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "train-000000.tar",
        "train-000001.tar",
        "train.json",
    ]


def _parts(path: Path, world: int, workers: int, **kw: Any) -> list[list[str]]:
    out = []
    for rank in range(world):
        stream = ShardStream(path, "train", rank=rank, world_size=world, **kw)
        got = [s.id for w in range(workers) for s in stream.iter_part(w, workers)]
        assert len(got) == len(stream)  # len() is what the rank reads, whatever its workers
        out.extend([s.id for s in stream.iter_part(w, workers)] for w in range(workers))
    return out


@pytest.mark.parametrize("shard_size", [1, 3, 20])
@pytest.mark.parametrize(("world", "workers"), [(1, 1), (1, 3), (2, 2), (3, 2), (2, 5)])
def test_rank_worker_parts_are_disjoint_and_cover_everything(
    tmp_path: Path, shard_size: int, world: int, workers: int
) -> None:
    require("webdataset")
    toy = Toy(10)
    write_shards(toy, tmp_path, shard_size=shard_size)
    parts = _parts(tmp_path, world, workers, shuffle_buffer=3, seed=1)
    ids = [i for p in parts for i in p]
    assert sorted(ids) == sorted(toy.ids()) and len(ids) == 10


def test_the_order_is_fixed_by_seed_and_epoch(tmp_path: Path) -> None:
    require("webdataset")
    write_shards(Toy(12), tmp_path, shard_size=3)

    def order(seed: int, epoch: int) -> list[str]:
        stream = ShardStream(tmp_path, "train", shuffle_buffer=4, seed=seed)
        stream.set_epoch(epoch)
        return [s.id for s in stream]

    first = order(0, 0)
    assert first == order(0, 0)
    assert sorted(first) == sorted(Toy(12).ids())
    assert first != [s.id for s in ShardStream(tmp_path, "train")]  # shuffled
    assert order(0, 1) != first and order(1, 0) != first


def test_dataloader_workers_read_disjoint_parts(tmp_path: Path) -> None:
    require("webdataset")
    write_shards(Toy(10), tmp_path, shard_size=2)
    stream = ShardStream(tmp_path, "train", shuffle_buffer=3, seed=0)
    ids = [i for b in data_loader(stream, 3, num_workers=2) for i in b.ids]
    assert sorted(ids) == sorted(Toy(10).ids())
    assert ids == [i for b in data_loader(stream, 3, num_workers=2) for i in b.ids]


def test_rank_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed_rank() == (1, 3)


def test_missing_and_damaged_shards_name_the_file_and_the_fix(tmp_path: Path) -> None:
    require("webdataset")
    write_shards(Toy(6), tmp_path, shard_size=3)
    shard = tmp_path / "train-000001.tar"
    data = shard.read_bytes()
    flipped = bytearray(data)
    flipped[700] ^= 0xFF  # inside the first member's data
    shard.write_bytes(bytes(flipped))
    for reader in (ShardDataset, ShardStream):
        with pytest.raises(ShardError, match=r"train-000001\.tar.*sha256.*--overwrite"):
            reader(tmp_path, "train")
    shard.write_bytes(data[:-1024])
    with pytest.raises(ShardError, match=r"train-000001\.tar.*truncated.*shards write"):
        ShardDataset(tmp_path, "train")
    garbage = b"\x01" * len(data)  # the recorded size, unverified: the tar itself is unreadable
    shard.write_bytes(garbage)
    with pytest.raises(ShardError, match=r"train-000001\.tar.*unreadable.*shards write"):
        ShardDataset(tmp_path, "train", verify=False)
    with pytest.raises(ShardError, match=r"train-000001\.tar.*unreadable.*shards write"):
        list(ShardStream(tmp_path, "train", verify=False))
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=r"train-000001\.tar.*missing.*shards write"):
        ShardStream(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"split 'test'.*its splits: train"):
        ShardDataset(tmp_path, "test")


def test_chunks_split_inside_shards_round_trip_as_separate_writable_tensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("webdataset")
    import polymodal.data.webshards.write as write_module

    monkeypatch.setattr(write_module, "CHUNK_EXAMPLES", 3)
    toy = Toy(10)
    write_shards(toy, tmp_path, shard_size=7)  # shard 0: chunks of 3, 3, 1; shard 1: 3
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        assert tar.getnames() == ["000000000.chunk", "000000003.chunk", "000000006.chunk"]
    streamed = list(ShardStream(tmp_path, "train"))
    by_index = ShardDataset(tmp_path, "train")
    for i in range(10):
        assert_same_sample(toy[i], streamed[i])
        assert_same_sample(toy[i], by_index[i])
    parts = _parts(tmp_path, 2, 3)  # 1 shard per rank, 3 workers: filters across chunks
    assert sorted(i for p in parts for i in p) == sorted(toy.ids())
    first, second = streamed[0].target, streamed[1].target  # rows of one view
    assert isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)
    before = second.clone()
    first += 1  # writable, and its own bytes
    assert torch.equal(second, before)


class Aligned(Toy):
    """Two aligned sequences sharing their timestamps; ``seq``'s dtype varies by example."""

    def __init__(self, n: int = 5) -> None:
        super().__init__(n)
        self.schema = Schema(
            (
                ModalitySpec("seq", ModalityKind.FEATURES, (3,), sequence=True),
                ModalitySpec("acc", ModalityKind.TIMESERIES, (4, 2), sample_rate=2),
            ),
            TargetSpec("classification", 2),
        )

    def __getitem__(self, i: int) -> Sample:
        times = torch.arange(4, dtype=torch.float32) / 2 + i
        seq = torch.full((4, 3), float(i), dtype=torch.float64 if i % 2 else torch.float32)
        acc = torch.full((4, 2), -float(i))
        return Sample(
            f"a{i}", {"seq": seq, "acc": acc}, i % 2, dict.fromkeys(("seq", "acc"), times)
        )


def test_shared_timestamps_and_mixed_dtypes_round_trip(tmp_path: Path) -> None:
    require("webdataset")
    source = Aligned()
    write_shards(source, tmp_path, shard_size=5)
    streamed = list(ShardStream(tmp_path, "train"))
    by_index = ShardDataset(tmp_path, "train")
    for i in range(5):
        assert_same_sample(source[i], streamed[i])
        assert_same_sample(source[i], by_index[i])
    stamps = streamed[2].timestamps
    assert stamps["seq"] is stamps["acc"]  # stored once, shared as the source shared them


def test_a_damaged_chunk_header_names_the_chunk(tmp_path: Path) -> None:
    require("webdataset")
    write_shards(Toy(4), tmp_path, shard_size=4)
    shard = tmp_path / "train-000000.tar"
    data = bytearray(shard.read_bytes())
    data[512] ^= 0xFF  # the chunk's magic, right after its tar header
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"chunk 000000000.*bad magic.*--overwrite"):
        list(ShardStream(tmp_path, "train", verify=False))
    with pytest.raises(ShardError, match=r"chunk 000000000.*bad magic.*--overwrite"):
        ShardDataset(tmp_path, "train", verify=False)


def test_data_config_takes_exactly_one_source() -> None:
    with pytest.raises(ValueError, match=r"exactly one of.*'data\.shards'"):
        DataConfig(manifest="m.csv", shards="sh")
    with pytest.raises(ValueError, match=r"data\.schema and data\.options"):
        DataConfig(shards="sh", options={"modalities": ["audio"]})


def _features_manifest(path: Path, n: int = 24) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(n):
            y = i % 2
            row: dict[str, object] = {"id": f"r{i}", "label": "pos" if y else "neg"}
            row["good"] = None if i % 5 == 4 else [y + rng.gauss(0, 0.5), rng.gauss(0, 1)]
            row["split"] = "test" if i % 4 == 3 else "train"
            row["group"] = f"g{i % 6}"
            f.write(json.dumps(row) + "\n")


def test_training_on_shards_matches_training_on_the_source(tmp_path: Path) -> None:
    manifest = tmp_path / "data.jsonl"
    _features_manifest(manifest)
    for split in ("train", "test"):
        write_shards(ManifestDataset(manifest, split=split), tmp_path / "sh", split=split)
    results = []
    for source in ({"manifest": str(manifest)}, {"shards": str(tmp_path / "sh")}):
        run = tmp_path / ("run_" + next(iter(source)))
        cfg = {
            "data": {**source, "val_fraction": 0.34, "batch_size": 4},
            "model": {
                "encoders": {"good": {"name": "mlp", "params": {"dim": 8}}},
                "fusion": {"name": "early", "params": {"hidden_dim": 8}},
            },
            "optim": {"epochs": 2, "lr": 1e-2},
            "device": "cpu",
            "progress": False,
            "output_dir": str(run),
        }
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["train", str(path)]) == 0
        results.append(json.loads((run / "results.json").read_text()))
    assert "loss" in results[0]["val"] and "accuracy" in results[0]["test"]
    for split in ("val", "test"):
        assert results[0][split] == results[1][split]  # same batches, same weights
    assert read_index(tmp_path / "sh", "train")["count"] == 18


def test_the_cli_writes_every_split_of_a_manifest_and_workers_read_by_index(
    manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sh"
    assert main(["shards", "write", str(manifest), "-o", str(out), "--shard-size", "1"]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["test.json", "train.json"]
    assert read_index(out, "train")["count"] == 3 and read_index(out, "test")["count"] == 1
    by_index = ShardDataset(out, "train")
    assert by_index[0].id == "a"  # a file is open now: each worker must open its own
    source = ManifestDataset(manifest, split="train")
    for a, b in zip(data_loader(source, 2), data_loader(by_index, 2, num_workers=2), strict=True):
        assert_same_batch(a, b)
