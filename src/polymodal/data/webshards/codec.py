"""Examples <-> the members of a WebDataset tar, and the split's index file.

Consecutive examples of a shard are packed into *chunks*: one tar member per chunk, of up
to :data:`CHUNK_EXAMPLES` examples or about :data:`CHUNK_BYTES` bytes.  A chunk is stored
under the key ``f"{i:09d}"`` of its first example's position ``i`` in the split (a
position, never an id: WebDataset cuts a member name at its first dot, and ids hold dots
and slashes), as ``<key>.chunk``:

==================  =====================================================================
bytes               hold
==================  =====================================================================
8                   :data:`CHUNK_MAGIC`
8                   the header's length ``H`` (little-endian unsigned)
``H``               the header, UTF-8 JSON, one list per field with an item per example:
                    ``ids``, ``targets``, ``meta``, ``text`` (per text modality) and
                    ``arrays``, per entry (``mod.<m>``, ``ts.<m>``, ``target``) either
                    ``dtype``, ``shape`` and ``offset`` (every example holds it with that
                    dtype and shape: one block), or ``dtypes``, ``shapes`` and
                    ``offsets`` (one per example, ``None`` where it lacks the entry), or
                    ``same``: another timestamp entry whose arrays it equals in every
                    example (read as the same tensors, as aligned modalities share them)
zeros               up to the next multiple of :data:`ALIGN` from the chunk's start
the rest            the arrays' bytes (C order), entry by entry, each entry's arrays back
                    to back from a multiple of :data:`ALIGN`
==================  =====================================================================

Why chunks: a tar member costs a reader tens of microseconds of Python (``tarfile``, which
``webdataset`` streams with), more than decoding a small example; one member per array
(format 1) made streaming an in-memory data set's windows 5-7x slower than the data set
itself.  A chunk's arrays are read as views of one buffer (``np.frombuffer``, no parsing,
no copy; an entry every example holds with one shape is one view split into rows), the
header once per chunk.

A missing modality stores nothing (no array, no text): reading gives ``None``,
as the source did.  Arrays keep their dtype and shape: reading gives back the tensors the
source data set decoded, bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.data.modality import Schema
from polymodal.data.sample import Sample

#: Version of the member layout above, recorded in each index file.
FORMAT_VERSION = 2
KEY_DIGITS = 9
CHUNK_MAGIC = b"PMSHARD2"
#: A chunk closes at this many examples, or once its arrays hold CHUNK_BYTES bytes: small
#: examples share a member, large ones (images, clips) get one or a few each.
CHUNK_EXAMPLES = 128
CHUNK_BYTES = 1 << 20
ALIGN = 64
_PREFIX = 16  # magic + header length


class ShardError(ValueError):
    """A shard set that cannot be read: a missing, truncated or altered file."""


def example_key(index: int) -> str:
    """The tar key of the chunk whose first example is at position ``index`` of its split."""
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
            f"Modality {name!r} cannot name a shard entry: a shard's entries are named "
            "mod.<modality>, and a '/' would make it a path. Rename the modality "
            "(a schema file's 'columns' maps a new name onto the column)."
        )


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


def _arrays(sample: Sample) -> dict[str, np.ndarray]:
    """The arrays ``sample`` stores, by entry name (``mod.<m>``, ``ts.<m>``, ``target``)."""
    out = {}
    for name, value in sample.modalities.items():
        if value is not None and not isinstance(value, str):
            check_modality_name(name)
            out[f"mod.{name}"] = torch.as_tensor(value).detach().cpu().numpy()
    for name, ts in sample.timestamps.items():
        check_modality_name(name)
        out[f"ts.{name}"] = ts.detach().cpu().numpy()
    if isinstance(sample.target, Tensor):
        out["target"] = sample.target.detach().cpu().numpy()
    return out


def sample_nbytes(sample: Sample) -> int:
    """The bytes of ``sample``'s arrays (what counts towards :data:`CHUNK_BYTES`)."""
    return sum(a.nbytes for a in _arrays(sample).values())


def _equal(per: list[dict[str, np.ndarray]], a: str, b: str) -> bool:
    """Whether every example holds entries ``a`` and ``b`` alike (or lacks both)."""
    for arrays in per:
        x, y = arrays.get(a), arrays.get(b)
        if (x is None) != (y is None):
            return False
        if (
            x is not None
            and y is not None
            and (x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y))
        ):
            return False
    return True


def encode_chunk(samples: list[Sample]) -> bytes:
    """The ``.chunk`` member of consecutive examples ``samples``."""
    per = [_arrays(s) for s in samples]
    entries = list(dict.fromkeys(e for arrays in per for e in arrays))
    blobs: list[bytes] = []
    offset = 0
    table: dict[str, dict[str, Any]] = {}
    for entry in entries:  # entry-major: one entry's arrays back to back
        same = None
        if entry.startswith("ts."):  # aligned modalities: one timestamp tensor for several
            candidates = [o for o in table if o.startswith("ts.") and "same" not in table[o]]
            same = next((o for o in candidates if _equal(per, o, entry)), None)
        if same is not None:
            table[entry] = {"same": same}
            continue
        dtypes = [arrays[entry].dtype.str if entry in arrays else None for arrays in per]
        shapes: list[list[int] | None] = []
        offsets: list[int | None] = []
        for arrays in per:
            if entry not in arrays:
                shapes.append(None)
                offsets.append(None)
                continue
            data = np.ascontiguousarray(arrays[entry]).tobytes()
            shapes.append(list(arrays[entry].shape))
            offsets.append(offset)
            blobs.append(data)
            offset += len(data)
        pad = -offset % ALIGN
        blobs.append(bytes(pad))
        offset += pad
        uniform = dtypes[0] is not None and all(d == dtypes[0] for d in dtypes)
        if uniform and all(s == shapes[0] for s in shapes):  # one block
            table[entry] = {"dtype": dtypes[0], "shape": shapes[0], "offset": offsets[0]}
        else:
            table[entry] = {"dtypes": dtypes, "shapes": shapes, "offsets": offsets}
    text: dict[str, list[str | None]] = {}
    for j, sample in enumerate(samples):
        for name, value in sample.modalities.items():
            if isinstance(value, str):
                check_modality_name(name)
                text.setdefault(name, [None] * len(samples))[j] = value
    header = {
        "ids": [s.id for s in samples],
        "targets": [None if isinstance(s.target, Tensor) else s.target for s in samples],
        "meta": [_json_safe(s.meta) for s in samples],
        "text": text,
        "arrays": table,
    }
    head = json.dumps(header, ensure_ascii=False).encode("utf-8")
    pad = -(_PREFIX + len(head)) % ALIGN
    return CHUNK_MAGIC + struct.pack("<Q", len(head)) + head + bytes(pad) + b"".join(blobs)


def _damaged(where: str, what: str) -> ShardError:
    return ShardError(
        f"{where}: {what}; the shard is damaged. Write the shards again "
        "(polymodal shards write ... --overwrite)."
    )


def header_size(prefix: bytes, where: str) -> int:
    """The header length ``H`` from a chunk's first 16 bytes."""
    if len(prefix) < _PREFIX or prefix[:8] != CHUNK_MAGIC:
        raise _damaged(where, f"not a format-{FORMAT_VERSION} chunk (bad magic)")
    return int(struct.unpack("<Q", prefix[8:_PREFIX])[0])


def read_header(head: bytes, where: str) -> tuple[dict[str, Any], int]:
    """``(header, data start)`` of a chunk from its first bytes (prefix and header)."""
    size = header_size(head[:_PREFIX], where)
    try:
        header = json.loads(head[_PREFIX : _PREFIX + size].decode("utf-8"))
        for key in ("ids", "targets", "meta", "text", "arrays"):
            header[key]  # a KeyError names the missing key
    except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _damaged(where, f"its header is unreadable ({e!r})") from e
    start = _PREFIX + size
    return dict(header), start + (-start % ALIGN)


def array_spans(header: dict[str, Any], j: int) -> dict[str, tuple[str, list[int], int, int]]:
    """Example ``j``'s arrays in its chunk: entry -> (dtype, shape, offset, nbytes)."""
    out = {}
    table = header["arrays"]
    for entry, col in table.items():
        col = table[col["same"]] if "same" in col else col
        if "shape" in col:  # every example, one shape, back to back
            nbytes = math.prod(col["shape"]) * np.dtype(col["dtype"]).itemsize
            out[entry] = (col["dtype"], col["shape"], col["offset"] + j * nbytes, nbytes)
        elif col["offsets"][j] is not None:
            dtype, shape = col["dtypes"][j], col["shapes"][j]
            nbytes = math.prod(shape) * np.dtype(dtype).itemsize
            out[entry] = (dtype, shape, col["offsets"][j], nbytes)
    return out


def view(buf: bytearray, start: int, dtype: str, shape: list[int], nbytes: int) -> Tensor:
    """The tensor at ``buf[start : start + nbytes]``, a writable view (no copy)."""
    if start < 0 or start + nbytes > len(buf):
        raise ValueError(f"an array at bytes {start}..{start + nbytes} of a {len(buf)}-byte chunk")
    dt = np.dtype(dtype)
    return torch.from_numpy(np.frombuffer(buf, dt, nbytes // dt.itemsize, start).reshape(shape))


def _columns(header: dict[str, Any], buf: bytearray, start: int) -> dict[str, Sequence[Any]]:
    """Each entry's tensors, one per example (``None`` where absent); an entry every
    example holds with one shape is one view, split into rows.  Raises ``ValueError``
    for an array past the end of ``buf``."""
    out: dict[str, Sequence[Any]] = {}
    n = len(header["ids"])
    for entry, col in header["arrays"].items():
        if "same" in col:
            continue
        if "shape" in col:
            shape = col["shape"]
            count = n * math.prod(shape)
            block = np.frombuffer(buf, np.dtype(col["dtype"]), count, start + col["offset"])
            out[entry] = torch.from_numpy(block.reshape(n, *shape)).unbind(0)
            continue
        rows: list[Tensor | None] = []
        for dtype, shape, offset in zip(col["dtypes"], col["shapes"], col["offsets"], strict=True):
            if offset is None:
                rows.append(None)
            else:
                array = np.frombuffer(buf, np.dtype(dtype), math.prod(shape), start + offset)
                rows.append(torch.from_numpy(array.reshape(shape)))
        out[entry] = rows
    for entry, col in header["arrays"].items():
        if "same" in col:
            out[entry] = out[col["same"]]
    return out


def build_sample(
    header: dict[str, Any], j: int, arrays: dict[str, Tensor], schema: Schema, where: str
) -> Sample:
    """The :class:`Sample` of example ``j`` of a chunk, its arrays given by entry."""
    mods: dict[str, Tensor | str | None] = {}
    stamps: dict[str, Tensor] = {}
    try:
        text = header["text"]
        for spec in schema.modalities:
            name = spec.name
            if name in text and text[name][j] is not None:
                mods[name] = text[name][j]
            else:
                mods[name] = arrays.get(f"mod.{name}")
            stamp = arrays.get(f"ts.{name}")
            if stamp is not None:
                stamps[name] = stamp
        target = arrays.get("target")
        return Sample(
            str(header["ids"][j]),
            mods,
            header["targets"][j] if target is None else target,
            stamps,
            dict(header["meta"][j]),
        )
    except (KeyError, IndexError, TypeError) as e:
        raise _damaged(where, f"an entry is missing or unreadable ({e!r})") from e


def decode_chunk(
    data: bytes, schema: Schema, where: str, keep: Callable[[int], bool] | None = None
) -> list[Sample]:
    """The examples of a ``.chunk`` member (the ``j``-th when ``keep(j)``), in order.

    Their arrays are views of one writable copy of ``data``: no parsing, no copy each
    (what :func:`build_sample` does per example, done per chunk: the stream's inner loop).
    """
    header, start = read_header(data, where)
    buf = bytearray(data)
    try:
        columns = _columns(header, buf, start)
        ids, targets, metas = header["ids"], header["targets"], header["meta"]
        text = header["text"]
        fields = [
            (s.name, columns.get(f"mod.{s.name}"), text.get(s.name), columns.get(f"ts.{s.name}"))
            for s in schema.modalities
        ]
        target_rows = columns.get("target")
        out = []
        for j in range(len(ids)):
            if keep is not None and not keep(j):
                continue
            mods: dict[str, Tensor | str | None] = {}
            stamps: dict[str, Tensor] = {}
            for name, rows, texts, stamp_rows in fields:
                if texts is not None and texts[j] is not None:
                    mods[name] = texts[j]
                else:
                    mods[name] = None if rows is None else rows[j]
                if stamp_rows is not None and stamp_rows[j] is not None:
                    stamps[name] = stamp_rows[j]
            target = targets[j]
            if target_rows is not None and target_rows[j] is not None:
                target = target_rows[j]
            out.append(Sample(str(ids[j]), mods, target, stamps, metas[j]))  # fresh from JSON
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise _damaged(where, f"an entry is missing or unreadable ({e!r})") from e
    return out


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
    "array_spans",
    "build_sample",
    "decode_chunk",
    "encode_chunk",
    "example_key",
    "header_size",
    "index_path",
    "json_target",
    "read_header",
    "read_index",
    "sample_nbytes",
    "shard_name",
    "view",
]
