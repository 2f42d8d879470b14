"""Registry of built-in data sets and location of their files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.paths import DatasetNotFoundError, find_root, not_found
from polymodal.errors import did_you_mean
from polymodal.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """What ``polymodal datasets info`` prints besides counts."""

    name: str
    description: str
    licence: str
    upstream: str
    splits: tuple[str, ...]
    subdir: str
    marker: str  # a file whose presence proves the folder holds this data set


DATASETS: Registry[MultimodalDataset] = Registry("dataset")
INFOS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> Callable[[Callable[..., MultimodalDataset]], Any]:
    INFOS[info.name] = info
    return DATASETS.register(info.name, info.description)


def locate(
    info: DatasetInfo, root: str | os.PathLike[str] | None = None, download: bool = False
) -> Path:
    """The folder holding ``info``'s files: ``root``, ``$POLYMODAL_DATA/<subdir>``, the cache.

    With ``download=True`` and nothing found, fetch from upstream into the cache (or ``root``).
    """
    found = find_root(info.subdir, info.marker, root)
    if found is not None:
        return found
    if download:
        from polymodal.data.download import download_dataset

        return download_dataset(info.name, root)
    raise DatasetNotFoundError(not_found(info.name, info.subdir, info.marker, root))


def check_modalities(
    dataset: str, modalities: Sequence[str] | None, available: Sequence[str]
) -> tuple[str, ...]:
    """The ``modalities=`` option every built-in data set takes, checked.

    ``None`` means all of ``available``; otherwise a non-empty sequence of distinct names
    from it, in the order given (the order of the schema's modalities).
    """
    if modalities is None:
        return tuple(available)
    if isinstance(modalities, str):
        raise TypeError(
            f"The 'modalities' parameter of {dataset} must be a sequence of names, e.g. "
            f"[{modalities!r}]; got the string {modalities!r}."
        )
    mods = tuple(modalities)
    if not mods:
        raise ValueError(
            f"The 'modalities' parameter of {dataset} must name at least one of "
            f"{list(available)}; got none."
        )
    for m in mods:
        if m not in available:
            raise ValueError(
                f"The 'modalities' parameter of {dataset} must be among {list(available)}; "
                f"got {m!r}." + did_you_mean(m, available)
            )
    if len(set(mods)) != len(mods):
        raise ValueError(f"The 'modalities' parameter of {dataset} repeats a name: {list(mods)}.")
    return mods


def load_dataset(name: str, split: str = "train", **kwargs: Any) -> MultimodalDataset:
    """Build the built-in data set ``name`` for ``split`` (see ``polymodal datasets list``)."""
    info = INFOS.get(name)
    if info is not None and split not in info.splits:
        raise ValueError(f"Data set {name!r} has splits {list(info.splits)}; got split={split!r}.")
    return DATASETS.build(name, split=split, **kwargs)
