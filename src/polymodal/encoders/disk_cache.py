"""Frozen-encoder outputs on disk, addressed by content: the level under the in-memory cache.

A frozen encoder (``minilm``; ``efficientnet_lite0`` in eval mode) gives the same outputs
for the same input every time, so ``polymodal evaluate`` then ``predict`` on the same data,
or a second training run over the same texts, need not run it again.  :class:`FeatureCache` stores each input's outputs under the
SHA-256 of

* the encoder's identity (:func:`encoder_identity`): its name, a checksum of every byte of
  its weights, the versions of the packages that compute it, and the settings that change
  its outputs (``max_length``, pooling);
* the compute context (:func:`compute_context`: float32, or autocast and its dtype),
* the input's content (a text's UTF-8 bytes; an image's decoded pixels and their shape),

so other weights, settings or versions never read an entry that is not theirs, while the
same text met in another data set, split, order or batch is a hit.

Where: the folder ``$POLYMODAL_FEATURE_CACHE`` names, by default ``cache_dir()/"features"``
(``$XDG_CACHE_HOME/polymodal/features``, or ``~/.cache/polymodal/features``), file
``encoder-outputs.sqlite``.  ``POLYMODAL_FEATURE_CACHE=off`` (or ``0``) turns it off.

Size: sized by the data (no item count), with a cap of ``POLYMODAL_FEATURE_CACHE_MB`` MiB
(default :data:`DEFAULT_MB`) counted as the bytes of the stored arrays; when a write passes
it, the least recently used entries (by a counter bumped on every read and write, not by
the clock) are deleted and the file is shrunk.

Format: one SQLite database (``sqlite3`` is in the standard library), chosen over files of
arrays because

* entries are many and small (a sentence's (L, 384) float32 token states are 10-100 KB,
  an image's 7x7x1280 map 250 KB): a file each costs an inode and a rename each, and
  eviction would list them all; one file per batch ties entries to the batch they were
  computed in, which another split or order does not share;
* each write is one transaction, so it is atomic: a killed process rolls back and never
  leaves half an entry; several processes read and write at once (WAL journal, busy
  timeout);
* the bookkeeping (``entries``: key, last use, size, CRC-32, dtypes and shapes) lives apart
  from the bytes (``blobs``), so summing sizes and picking the least recently used entries
  read small rows only.

An entry whose bytes do not match its CRC, dtypes and shapes (a damaged disk, a hand-edited
file) is logged as a warning, deleted, and computed again.  A database that cannot be read
at all is set aside (renamed ``*.corrupt``) with a warning and a new one started; any other
SQLite failure turns the cache off for the process with a warning.  The cache never makes a
run fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.checkpoint import weights_checksum
from polymodal.data.paths import cache_dir

logger = logging.getLogger(__name__)

ENV_DIR = "POLYMODAL_FEATURE_CACHE"
ENV_MB = "POLYMODAL_FEATURE_CACHE_MB"
#: Default cap of the cache, MiB.
DEFAULT_MB = 4096.0
FILE_NAME = "encoder-outputs.sqlite"
#: Version of the entry layout; part of every key.
FORMAT_VERSION = 1
_OFF = ("off", "0", "false", "no", "none")
_CHUNK = 500  # keys per SQL statement (SQLite allows 999 parameters in old builds)

Entry = tuple[Tensor, ...]


def cache_folder() -> Path | None:
    """The cache's folder from ``$POLYMODAL_FEATURE_CACHE``, or ``None`` when it is off."""
    value = os.environ.get(ENV_DIR, "").strip()
    if value.lower() in _OFF:
        return None
    return Path(value).expanduser() if value else cache_dir() / "features"


def cache_limit_bytes() -> int:
    """The cap from ``$POLYMODAL_FEATURE_CACHE_MB`` (MiB, default :data:`DEFAULT_MB`)."""
    value = os.environ.get(ENV_MB, "").strip()
    if not value:
        return int(DEFAULT_MB * 2**20)
    try:
        mb = float(value)
    except ValueError:
        mb = float("nan")
    if not mb > 0 or mb == float("inf"):
        raise ValueError(
            f"{ENV_MB} must be a number of MiB > 0, got {value!r}; set it to e.g. 4096, or "
            f"turn the cache off with {ENV_DIR}=off."
        )
    return int(mb * 2**20)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def encoder_identity(name: str, module: nn.Module, **settings: Any) -> str:
    """SHA-256 of what decides an encoder's outputs besides its input.

    Args:
        name: the encoder's registry name.
        module: the frozen network (its weights are checksummed byte for byte).
        settings: options that change the outputs (``max_length=256``, package versions).
    """
    parts = {
        "format": FORMAT_VERSION,
        "name": name,
        "weights": weights_checksum(module),
        "torch": torch.__version__.split("+")[0],
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(*packages: str) -> dict[str, str]:
    """``{package: installed version}`` for an identity's settings."""
    return {p: _version(p) for p in packages}


def content_key(identity: str, content: bytes, context: str = "float32") -> str:
    """The key of one input: SHA-256 of the encoder identity, the compute context
    (:func:`compute_context`) and the input's bytes."""
    prefix = f"{identity}\x00{context}\x00".encode()
    return hashlib.sha256(prefix + content).hexdigest()


class _Damaged(Exception):
    pass


def _encode_entry(entry: Entry) -> tuple[str, bytes]:
    """Raw bytes of each tensor (any dtype, bfloat16 included) and a JSON layout."""
    flat = [t.detach().to("cpu").contiguous().reshape(-1) for t in entry]
    layout = json.dumps([[str(t.dtype), list(t.shape)] for t in entry])
    return layout, b"".join(f.view(torch.uint8).numpy().tobytes() for f in flat)


def _decode_entry(layout: str, data: bytes, crc: int) -> Entry:
    if zlib.crc32(data) != crc:
        raise _Damaged("its bytes do not match their CRC-32")
    out, offset = [], 0
    try:
        for dtype_name, shape in json.loads(layout):
            dtype = getattr(torch, str(dtype_name).removeprefix("torch."))
            if not isinstance(dtype, torch.dtype):
                raise TypeError(f"{dtype_name!r} is not a torch dtype")
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if offset + size > len(data):
                raise ValueError("the bytes end early")
            raw = bytearray(data[offset : offset + size])
            out.append(torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape))
            offset += size
    except (ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise _Damaged(f"its layout {layout[:80]!r} does not fit its bytes ({exc})") from None
    if offset != len(data):
        raise _Damaged(f"it holds {len(data)} bytes, its layout {offset}")
    return tuple(out)


def compute_context(device: torch.device) -> str:
    """What of the calling context changes outputs: autocast on ``device``'s type and its
    dtype (a bfloat16 run's outputs are not a float32 run's).  Part of each key."""
    if torch.is_autocast_enabled(device.type):
        return f"autocast:{torch.get_autocast_dtype(device.type)}"
    return "float32"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "
    "used INTEGER NOT NULL, nbytes INTEGER NOT NULL, crc INTEGER NOT NULL, layout TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_used ON entries (used)",
    "CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
)


class FeatureCache:
    """Encoder outputs (tuples of tensors) by key, in one SQLite file (see the module
    docstring); safe across threads and processes.

    Args:
        folder: where ``encoder-outputs.sqlite`` lives (created if needed).
        max_bytes: cap on the stored arrays' bytes; least recently used entries go first.
    """

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int) -> None:
        self.path = Path(folder) / FILE_NAME
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.disabled = False

    # ------------------------------------------------------------------ connection

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table only
            # WAL fails on e.g. a network file system: keep the default journal there.
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("SELECT count(*) FROM entries").fetchone()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _db(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            logger.warning(
                "The feature cache %s cannot be read (%s); moving it to %s and starting a new one.",
                self.path,
                exc,
                aside,
            )
            for suffix in ("", "-wal", "-shm"):
                side = Path(str(self.path) + suffix)
                if side.exists():
                    os.replace(side, str(aside) + suffix)
            conn = self._connect()
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _fail(self, exc: BaseException) -> None:
        self.disabled = True
        logger.warning(
            "The feature cache %s failed (%s); it is off for the rest of this process "
            "(outputs are computed as without it). Set %s to a writable folder, or to off.",
            self.path,
            exc,
            ENV_DIR,
        )

    def close(self) -> None:
        """Close the connection (a later call opens it again)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ reading

    def get(self, keys: Sequence[str]) -> list[Entry | None]:
        """The entries of ``keys`` (``None`` where there is none, or it was damaged)."""
        if self.disabled or not keys:
            return [None] * len(keys)
        with self._lock:
            try:
                return self._get(list(keys))
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc)
                return [None] * len(keys)

    def _get(self, keys: list[str]) -> list[Entry | None]:
        db = self._db()
        found: dict[str, Entry] = {}
        damaged: list[str] = []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                "SELECT e.key, e.layout, e.crc, b.data FROM entries e LEFT JOIN blobs b "
                f"ON b.id = e.id WHERE e.key IN ({marks})",
                chunk,
            ).fetchall()
            for key, layout, crc, data in rows:
                try:
                    if data is None:
                        raise _Damaged("its bytes are missing")
                    found[key] = _decode_entry(layout, bytes(data), crc)
                except _Damaged as exc:
                    logger.warning(
                        "Feature cache entry %s in %s is damaged: %s; computing it again.",
                        key[:16],
                        self.path,
                        exc,
                    )
                    damaged.append(key)
        if found or damaged:
            db.execute("BEGIN IMMEDIATE")
            try:
                tick = self._tick(db)
                hits = list(found)
                for start in range(0, len(hits), _CHUNK):
                    chunk = hits[start : start + _CHUNK]
                    db.execute(
                        f"UPDATE entries SET used = ? WHERE key IN ({','.join('?' * len(chunk))})",
                        [tick, *chunk],
                    )
                self._delete(db, damaged)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return [found.get(k) for k in keys]

    @staticmethod
    def _tick(db: sqlite3.Connection) -> int:
        (last,) = db.execute("SELECT coalesce(max(used), 0) FROM entries").fetchone()
        return int(last) + 1

    @staticmethod
    def _delete(db: sqlite3.Connection, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            db.execute(
                f"DELETE FROM blobs WHERE id IN (SELECT id FROM entries WHERE key IN ({marks}))",
                chunk,
            )
            db.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk)

    # ------------------------------------------------------------------ writing

    def put(self, items: Mapping[str, Entry]) -> None:
        """Store ``items`` (key -> tensors), then evict the least recently used entries
        while the stored bytes pass the cap.  Keys already stored are left as they are."""
        if self.disabled or not items:
            return
        encoded = {k: _encode_entry(v) for k, v in items.items()}
        with self._lock:
            try:
                self._put(encoded)
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc)

    def _put(self, encoded: dict[str, tuple[str, bytes]]) -> None:
        db = self._db()
        evicted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            tick = self._tick(db)
            for key, (layout, data) in encoded.items():
                if len(data) > self.max_bytes:
                    continue  # would evict everything and still not fit
                cur = db.execute(
                    "INSERT INTO entries (key, used, nbytes, crc, layout) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (key) DO NOTHING",
                    (key, tick, len(data), zlib.crc32(data), layout),
                )
                if cur.rowcount == 1:
                    db.execute("INSERT INTO blobs (id, data) VALUES (?, ?)", (cur.lastrowid, data))
            evicted = self._evict(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if evicted:
            db.execute("PRAGMA incremental_vacuum")  # give the freed pages back to the disk

    def _evict(self, db: sqlite3.Connection) -> int:
        (total,) = db.execute("SELECT coalesce(sum(nbytes), 0) FROM entries").fetchone()
        excess = int(total) - self.max_bytes
        if excess <= 0:
            return 0
        victims: list[str] = []
        for key, nbytes in db.execute("SELECT key, nbytes FROM entries ORDER BY used, id"):
            victims.append(key)
            excess -= int(nbytes)
            if excess <= 0:
                break
        self._delete(db, victims)
        return len(victims)

    # ------------------------------------------------------------------ inspection

    def stats(self) -> tuple[int, int]:
        """(entries, bytes of their arrays) now stored."""
        with self._lock:
            n, total = (
                self._db()
                .execute("SELECT count(*), coalesce(sum(nbytes), 0) FROM entries")
                .fetchone()
            )
        return int(n), int(total)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.path)!r}, max_bytes={self.max_bytes})"


_OPEN: dict[tuple[str, int], FeatureCache] = {}
_OPEN_LOCK = threading.Lock()
_PAUSED: ContextVar[bool] = ContextVar("polymodal_feature_cache_paused", default=False)


@contextmanager
def paused() -> Iterator[None]:
    """Within the block, :func:`open_cache` returns ``None`` (in this thread or task): for a
    caller that caches the same outputs at another level, e.g. a joint run's split-level
    pooled features, which would otherwise also store every image's full feature map."""
    token = _PAUSED.set(True)
    try:
        yield
    finally:
        _PAUSED.reset(token)


def open_cache() -> FeatureCache | None:
    """The process's :class:`FeatureCache` for the current environment, or ``None`` when
    ``$POLYMODAL_FEATURE_CACHE`` turns it off or within :func:`paused`.  The environment is
    read at each call, so a change (a test pointing it at a temporary folder) takes effect."""
    folder = cache_folder()
    if folder is None or _PAUSED.get():
        return None
    limit = cache_limit_bytes()
    key = (str(folder.resolve()), limit)
    with _OPEN_LOCK:
        cache = _OPEN.get(key)
        if cache is None:
            cache = _OPEN[key] = FeatureCache(folder, limit)
    return None if cache.disabled else cache


__all__ = [
    "DEFAULT_MB",
    "ENV_DIR",
    "ENV_MB",
    "FeatureCache",
    "cache_folder",
    "cache_limit_bytes",
    "compute_context",
    "content_key",
    "encoder_identity",
    "open_cache",
    "package_versions",
    "paused",
]
