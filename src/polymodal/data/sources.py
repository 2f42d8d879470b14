"""One argument for "which examples": a manifest path, a shard folder or a built-in data
set name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.manifest.table import MANIFEST_SUFFIXES


def is_manifest(source: str) -> bool:
    """Whether ``source`` names a manifest file (by suffix, or an existing file)."""
    path = Path(source)
    return path.suffix.lower() in MANIFEST_SUFFIXES or path.is_file()


def is_shard_folder(source: str) -> bool:
    """Whether ``source`` is a folder of ``polymodal shards write`` (it holds an index)."""
    path = Path(source)
    return path.is_dir() and any(path.glob("*.json"))


def load_source(
    source: str, split: str | None = None, root: str | None = None, default_split: str = "test"
) -> MultimodalDataset:
    """A manifest path, a shard folder or a built-in data set name -> the data set.

    Args:
        source: a ``.csv``/``.tsv``/``.jsonl`` manifest, a folder of ``polymodal shards
            write`` (its split ``split``, ``None``: ``default_split``), or a name from
            ``polymodal datasets list``.
        split: the manifest's ``split`` column value to keep (``None``: every row), or the
            built-in data set's split (``None``: ``default_split``).
        root: the built-in data set's folder (``None``: ``$POLYMODAL_DATA``, the cache).
    """
    if is_manifest(source):
        from polymodal.data.manifest import ManifestDataset

        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"The manifest {path} does not exist; check the path.")
        return ManifestDataset(path, split=split)
    if is_shard_folder(source):
        from polymodal.data.webshards import ShardDataset

        return ShardDataset(source, split=split or default_split)
    from polymodal.data.datasets import load_dataset

    kwargs: dict[str, Any] = {} if root is None else {"root": root}
    return load_dataset(source, split=split or default_split, **kwargs)


__all__ = ["is_manifest", "is_shard_folder", "load_source"]
