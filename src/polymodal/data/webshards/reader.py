"""The map-style reader of a shard folder (:class:`ShardDataset`) and the checks every
reader runs on a shard set before reading it (:func:`check_shards`)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import IO, Any

import torch

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.modality import Schema
from polymodal.data.sample import Sample
from polymodal.data.webshards.codec import (
    FORMAT_VERSION,
    ShardError,
    array_spans,
    build_sample,
    example_key,
    header_size,
    read_header,
    read_index,
    view,
)
from polymodal.data.webshards.write import sha256_file

REWRITE = "write the shards again (polymodal shards write SOURCE -o DIR --overwrite)"

# (path, size, mtime_ns) of shards whose sha256 matched, so one process hashes each once.
_VERIFIED: set[tuple[str, int, int]] = set()


def check_shards(directory: Path, index: dict[str, Any], verify: bool) -> list[Path]:
    """The paths of ``index``'s shards, each checked to exist with its recorded size (and,
    with ``verify``, its sha256); a failed check raises, naming the file and the fix."""
    paths = []
    for shard in index["shards"]:
        path = directory / shard["name"]
        if not path.is_file():
            raise FileNotFoundError(
                f"Shard {str(path)!r} of split {index['split']!r} is missing: the index "
                f"{index['split']}.json lists it. Copy it back, or {REWRITE}."
            )
        stat = path.stat()
        if stat.st_size != shard["bytes"]:
            raise ShardError(
                f"Shard {str(path)!r} has {stat.st_size} bytes but its index records "
                f"{shard['bytes']}: it is truncated or was changed. Copy it again, or {REWRITE}."
            )
        stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if verify and stamp not in _VERIFIED:
            if sha256_file(path) != shard["sha256"]:
                raise ShardError(
                    f"Shard {str(path)!r} does not match the sha256 its index records: it "
                    f"is corrupt. Copy it again, or {REWRITE}."
                )
            _VERIFIED.add(stamp)
        paths.append(path)
    return paths


def index_targets(index: dict[str, Any]) -> list[Any]:
    """The index's targets as the source gave them (a multilabel list -> a float tensor)."""
    return [
        torch.tensor(t, dtype=torch.float32) if isinstance(t, list) else t for t in index["targets"]
    ]


class ShardDataset(MultimodalDataset):
    """A split written by :func:`~polymodal.data.webshards.write_shards`, read by index.

    Map-style: example ``i`` is the ``i``-th example of the source split, read by seeking
    to its arrays in its chunk (their offsets come from one pass over the tar headers and
    the chunks' own headers when the data set is built).  ``len``, ``targets()``, ``groups()`` and ``ids()`` come from the index, so
    training reads shards exactly as it reads the source: same examples, same order, same
    validation carve, same batches (``data.shards`` in a run config).  Stream them instead
    with :class:`~polymodal.data.webshards.ShardStream`.

    Args:
        path: the shard folder (``polymodal shards write ... -o DIR``).
        split: which split's index (``DIR/<split>.json``) to read.
        verify: check each shard's sha256 against the index (once per process and file).
    """

    def __init__(self, path: str | os.PathLike[str], split: str = "train", verify: bool = True):
        self.path = Path(path)
        index = read_index(self.path, split)
        self.schema = Schema.from_dict(index["schema"])
        self.name = str(index.get("dataset") or self.path.name)
        self.split = split
        self._index = index
        self._paths = check_shards(self.path, index, verify)
        self._targets = index_targets(index)
        # example -> (shard number, offset of its chunk's data, the chunk's header, its row)
        self._members: list[tuple[int, int, dict[str, Any], int]] = []
        for number, path_ in enumerate(self._paths):
            self._scan(number, path_)
        if len(self._members) != index["count"]:
            raise ShardError(
                f"The shards of {str(self.path)!r} split {split!r} hold {len(self._members)} "
                f"examples but the index records {index['count']}; {REWRITE}."
            )
        self._files: dict[int, IO[bytes]] = {}
        self._pid = -1

    def _scan(self, number: int, path: Path) -> None:
        start = len(self._members)
        try:
            with tarfile.open(path, "r:") as tar, open(path, "rb") as f:
                for m in tar:
                    key, _, suffix = m.name.partition(".")
                    where = f"{path}, chunk {key}"
                    if suffix != "chunk" or int(key) != len(self._members):
                        raise ShardError(
                            f"{where}: expected the member {example_key(len(self._members))}"
                            f".chunk, found {m.name!r}; the shard is damaged or not of format "
                            f"{FORMAT_VERSION}; {REWRITE}."
                        )
                    f.seek(m.offset_data)
                    prefix = f.read(16)
                    head = prefix + f.read(header_size(prefix, where))
                    header, data = read_header(head, where)
                    self._members += [
                        (number, m.offset_data + data, header, j) for j in range(len(header["ids"]))
                    ]
        except (tarfile.TarError, ValueError, OSError) as e:
            if isinstance(e, ShardError):
                raise
            raise ShardError(f"Shard {str(path)!r} is unreadable ({e!r}); {REWRITE}.") from e
        if len(self._members) - start != self._index["shards"][number]["count"]:
            raise ShardError(
                f"Shard {str(path)!r} holds {len(self._members) - start} examples, its index "
                f"records {self._index['shards'][number]['count']}; {REWRITE}."
            )

    def __len__(self) -> int:
        return len(self._members)

    def _file(self, number: int) -> IO[bytes]:
        if self._pid != os.getpid():  # a DataLoader worker opens its own handles
            self._files, self._pid = {}, os.getpid()
        if number not in self._files:
            self._files[number] = open(self._paths[number], "rb")  # noqa: SIM115
        return self._files[number]

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a shard set of {n} examples")
        number, data, header, j = self._members[index % n]
        where = f"{self._paths[number]}, example {index % n}"
        f = self._file(number)
        arrays = {}
        for entry, (dtype, shape, offset, nbytes) in array_spans(header, j).items():
            f.seek(data + offset)
            buf = bytearray(f.read(nbytes))
            if len(buf) != nbytes:
                raise ShardError(f"{where}: the shard ends inside its {entry}; {REWRITE}.")
            arrays[entry] = view(buf, 0, dtype, shape, nbytes)
        return build_sample(header, j, arrays, self.schema, where)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, -1  # open files do not pickle
        return state

    def targets(self) -> list[Any]:
        return list(self._targets)

    def groups(self) -> list[str]:
        return list(self._index["groups"])

    def ids(self) -> list[str]:
        return list(self._index["ids"])

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.path)!r}, split={self.split!r}, n={len(self)})"


__all__ = ["ShardDataset", "check_shards", "index_targets"]
