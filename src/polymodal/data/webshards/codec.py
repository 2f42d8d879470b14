"""One example <-> the members of a WebDataset tar, and the split's index file.

An example at position ``i`` of its split is stored under the key ``f"{i:09d}"`` (a
position, never the id: WebDataset cuts a member name at its first dot, and ids hold dots
and slashes).  Its members:

============================== ===========================================================
member                         holds
============================== ===========================================================
``<key>.json``                 ``{"id", "target", "group", "present", "meta"}`` (UTF-8 JSON)
``<key>.mod.<modality>.npy``   a tensor modality's decoded value, dtype and shape as decoded
``<key>.mod.<modality>.txt``   a text modality, UTF-8
``<key>.ts.<modality>.npy``    a modality's timestamps (seconds), when it has them
``<key>.target.npy``           a tensor target (multilabel); int/float targets are in JSON
============================== ===========================================================

A missing modality has no member (and is absent from ``present``): reading gives ``None``,
as the source did.  Decoded arrays make the round trip exact: reading gives back the tensors
the source data set decoded, bit for bit.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.data.modality import Schema
from polymodal.data.sample import Sample

#: Version of the member layout above, recorded in each index file.
FORMAT_VERSION = 1
KEY_DIGITS = 9


class ShardError(ValueError):
    """A shard set that cannot be read: a missing, truncated or altered file."""


def example_key(index: int) -> str:
    """The tar key of the example at position ``index`` of its split."""
    return f"{index:0{KEY_DIGITS}d}"


def index_path(directory: str | os.PathLike[str], split: str) -> Path:
    """``DIR/<split>.json``: a split's index (schema, count, shards and their sha256)."""
    return Path(directory) / f"{split}.json"


def shard_name(split: str, number: int) -> str:
    """``<split>-000000.tar``: the file name of a split's ``number``-th shard."""
    return f"{split}-{number:06d}.tar"


def check_modality_name(name: str) -> None:
    if "/" in name or not name:
        raise ValueError(
            f"Modality {name!r} cannot name a tar member: a shard's member names are "
            "<key>.mod.<modality>.npy, and a '/' would make it a folder. Rename the modality "
            "(a schema file's 'columns' maps a new name onto the column)."
        )


def _npy(t: Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, t.detach().cpu().numpy(), allow_pickle=False)
    return buf.getvalue()


def _tensor(data: bytes) -> Tensor:
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).copy())


def _json_safe(meta: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``meta`` that JSON keeps as they are (others are dropped)."""
    out = {}
    for k, v in meta.items():
        try:
            if json.loads(json.dumps(v)) == v:
                out[k] = v
        except (TypeError, ValueError):
            continue
    return out


def encode_sample(sample: Sample, index: int, group: str) -> dict[str, bytes]:
    """The tar members of ``sample`` (position ``index``, split group ``group``), by name."""
    key = example_key(index)
    members: dict[str, bytes] = {}
    present = []
    for name, value in sample.modalities.items():
        if value is None:
            continue
        check_modality_name(name)
        present.append(name)
        if isinstance(value, str):
            members[f"{key}.mod.{name}.txt"] = value.encode("utf-8")
        else:
            members[f"{key}.mod.{name}.npy"] = _npy(torch.as_tensor(value))
    for name, ts in sample.timestamps.items():
        check_modality_name(name)
        members[f"{key}.ts.{name}.npy"] = _npy(ts)
    target: Any = sample.target
    if isinstance(target, Tensor):
        members[f"{key}.target.npy"] = _npy(target)
        target = None
    info = {
        "id": sample.id,
        "target": target,
        "group": group,
        "present": present,
        "meta": _json_safe(sample.meta),
    }
    members[f"{key}.json"] = json.dumps(info, ensure_ascii=False).encode("utf-8")
    return members


def decode_sample(members: dict[str, bytes], schema: Schema, where: str) -> Sample:
    """The :class:`Sample` of one example's members (suffix -> bytes, no key).

    ``where`` (the shard and key) names the example in errors.
    """
    try:
        info = json.loads(members["json"].decode("utf-8"))
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(
            f"{where}: its .json member is missing or unreadable ({e!r}); the shard is "
            "damaged. Write the shards again (polymodal shards write ... --overwrite)."
        ) from e
    mods: dict[str, Tensor | str | None] = {}
    stamps: dict[str, Tensor] = {}
    try:
        for spec in schema.modalities:
            name = spec.name
            if name not in info["present"]:
                mods[name] = None
            elif f"mod.{name}.txt" in members:
                mods[name] = members[f"mod.{name}.txt"].decode("utf-8")
            else:
                mods[name] = _tensor(members[f"mod.{name}.npy"])
            if f"ts.{name}.npy" in members:
                stamps[name] = _tensor(members[f"ts.{name}.npy"])
        target = info["target"]
        if "target.npy" in members:
            target = _tensor(members["target.npy"])
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        raise ShardError(
            f"{where}: a member is missing or unreadable ({e!r}); the shard is damaged. "
            "Write the shards again (polymodal shards write ... --overwrite)."
        ) from e
    return Sample(str(info["id"]), mods, target, stamps, dict(info["meta"]))


def read_index(directory: str | os.PathLike[str], split: str) -> dict[str, Any]:
    """The index of ``split`` in the shard folder ``directory``, checked for its keys."""
    path = index_path(directory, split)
    if not path.is_file():
        found = sorted(p.stem for p in Path(directory).glob("*.json"))
        hint = (
            f"its splits: {', '.join(found)}"
            if found
            else "write them with `polymodal shards write SOURCE -o DIR`"
        )
        raise FileNotFoundError(
            f"No shards of split {split!r} in {str(directory)!r}: {path.name} is missing; {hint}."
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        for key in ("format", "schema", "count", "shards", "ids", "groups", "targets"):
            index[key]  # a KeyError names the missing key
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ShardError(
            f"The shard index {str(path)!r} is unreadable ({e!r}). Write the shards again "
            "(polymodal shards write ... --overwrite)."
        ) from e
    if index["format"] != FORMAT_VERSION:
        raise ShardError(
            f"The shard index {str(path)!r} has format {index['format']!r}; this polymodal "
            f"reads format {FORMAT_VERSION}. Write the shards again with this version."
        )
    return dict(index)


def json_target(target: Any) -> Any:
    """A target as the index records it: int, float, a list (multilabel) or ``None``."""
    if isinstance(target, Tensor):
        return target.tolist()
    return target


__all__ = [
    "FORMAT_VERSION",
    "ShardError",
    "decode_sample",
    "encode_sample",
    "example_key",
    "index_path",
    "json_target",
    "read_index",
    "shard_name",
]
