"""Write a data set's split as WebDataset tar shards plus an index (:func:`write_shards`)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.sample import Sample
from polymodal.data.webshards.codec import (
    CHUNK_BYTES,
    CHUNK_EXAMPLES,
    FORMAT_VERSION,
    check_modality_name,
    encode_chunk,
    example_key,
    index_path,
    json_target,
    sample_nbytes,
    shard_name,
)

log = logging.getLogger(__name__)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed owner, mode and time: the same examples give byte-identical shards.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _same_set(old: Path, index: dict[str, Any]) -> bool:
    try:
        prev = json.loads(old.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(prev == index)


def write_shards(
    dataset: MultimodalDataset,
    directory: str | os.PathLike[str],
    split: str | None = None,
    shard_size: int = 1000,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``dataset`` as ``DIR/<split>-000000.tar``, ... and ``DIR/<split>.json``.

    Each example is decoded once and stored as its decoded arrays, consecutive examples
    packed into chunks (see :mod:`polymodal.data.webshards.codec`); the index holds the schema
    (``schema.to_dict()``), the count, every example's id, group and target (so
    ``targets()`` and ``groups()`` need no shard), and each shard's name, count, size and
    sha256.  Shards are written under temporary names and renamed once all are complete,
    the index last, so a killed run leaves the previous set whole.

    Args:
        dataset: any :class:`MultimodalDataset` (built-in, manifest, subset).
        directory: the output folder (created).
        split: the split name in the file names (``None``: ``dataset.split``).
        shard_size: examples per shard (the last one holds the rest).
        overwrite: replace a different shard set of this split; without it, an existing
            index that differs is an error (an identical one is left as it is).
        progress: called with (examples written, total) after each example.

    Returns:
        The index written (or found identical).
    """
    if shard_size < 1:
        raise ValueError(f"The 'shard_size' parameter must be >= 1, got {shard_size}.")
    split = dataset.split if split is None else split
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"The 'split' parameter must be a plain file-name part, got {split!r}.")
    for spec in dataset.schema.modalities:
        check_modality_name(spec.name)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    groups, targets = dataset.groups(), dataset.targets()
    ids: list[str] = []
    shards: list[dict[str, Any]] = []
    temps: list[tuple[Path, Path]] = []
    try:
        for number, start in enumerate(range(0, max(n, 1), shard_size)):
            final = out / shard_name(split, number)
            temp = out / f".{final.name}.{os.getpid()}.tmp"
            temps.append((temp, final))
            stop = min(start + shard_size, n)
            with tarfile.open(temp, "w") as tar:
                chunk: list[Sample] = []
                first, size = start, 0
                for i in range(start, stop):
                    sample = dataset[i]
                    ids.append(sample.id)
                    chunk.append(sample)
                    size += sample_nbytes(sample)
                    if len(chunk) >= CHUNK_EXAMPLES or size >= CHUNK_BYTES or i == stop - 1:
                        _add(tar, f"{example_key(first)}.chunk", encode_chunk(chunk))
                        chunk, first, size = [], i + 1, 0
                    if progress is not None:
                        progress(i + 1, n)
            shards.append(
                {
                    "name": final.name,
                    "count": stop - start,
                    "bytes": temp.stat().st_size,
                    "sha256": sha256_file(temp),
                }
            )
        index = {
            "format": FORMAT_VERSION,
            "dataset": dataset.name,
            "split": split,
            "count": n,
            "schema": dataset.schema.to_dict(),
            "shards": shards,
            "ids": ids,
            "groups": [str(g) for g in groups],
            "targets": [json_target(t) for t in targets],
        }
        path = index_path(out, split)
        if path.exists() and not _same_set(path, index) and not overwrite:
            raise ValueError(
                f"{str(path)!r} already describes a different shard set of split {split!r}; "
                "pass --overwrite (overwrite=True) to replace it, or write to another folder."
            )
        stale = []
        if path.exists():
            prev = json.loads(path.read_text(encoding="utf-8"))
            keep = {s["name"] for s in shards}
            stale = [s["name"] for s in prev.get("shards", []) if s["name"] not in keep]
        for temp, final in temps:
            os.replace(temp, final)
        temps = []
        tmp_index = out / f".{path.name}.{os.getpid()}.tmp"
        tmp_index.write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp_index, path)
        for name in stale:
            (out / name).unlink(missing_ok=True)
    finally:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
    log.info("wrote %d examples of %s to %d shard(s) in %s", n, split, len(shards), out)
    return index


__all__ = ["sha256_file", "write_shards"]
