"""Fetch the built-in data sets from their upstream sources (or a mirror) and verify them.

Every built-in data set is read from one or more *source folders* (``mosi/``, ``fsdd/``,
``mnist/``, ``flickr8k/``, ``har_phone_watch/``, ``ravdess_speech/``), laid out as in the
project's shared data root.  Each source folder has a manifest, ``polymodal/data/datasets/checksums/<source>.json``:
``files`` maps every relative path to the sha256 of the file as the project's reference copy
holds it (build one with :func:`build_manifest`).

Where files come from:

* a **mirror** (``base_url=`` or the ``POLYMODAL_MIRROR`` environment variable): an HTTP(S)
  folder laid out like the shared data root, so file ``rel`` of source ``src`` is fetched from
  ``<base_url>/<src>/<rel>``.  Every file is checked against the manifest.
* otherwise the **upstream** named in :data:`~polymodal.data.upstream.SOURCES` (GitHub
  repositories at pinned commits, and the MNIST IDX files).  Files that are byte-for-byte
  upstream's are checked against the manifest.  Some of the reference copy is *not*
  upstream's bytes (the shared data README says which); each of those is checked another way:

  - ``mnist``: the gzip containers differ from the mirror's, so upstream files are checked by
    the sha256 of their *decompressed* bytes (``content_sha256`` in the manifest).  For
    ``t10k-images``, ``t10k-labels`` and ``train-labels`` it was computed from the reference
    copy, which holds the original content.  ``train-images`` in the reference copy was
    rebuilt (see the data README), so the original's content sha256 (``ba891046...``) was
    taken from published checksums: several public projects list it beside the other three,
    which they list exactly as computed here.
  - ``flickr8k``: the caption file and split lists were filtered to Flickr8k's own images
    (upstream also lists about 100 unrelated ``e*.jpg``/``*.png`` bird pictures).  From
    upstream, they are filtered the same way (:func:`_keep_flickr8k_lines`) and the result
    is checked against the manifest's sha256.  The images were re-encoded (JPEG quality 85)
    from upstream's 224x224 copy and no sha256 of upstream's images is known: each is only
    verified by Pillow, and a warning says how many files went unchecked.
  - ``ravdess_speech``: the reference copy holds upstream's 48 kHz WAVs re-encoded as 16 kHz
    Opus (``.ogg``).  From upstream, each ``.ogg`` is fetched as its ``.wav``
    (``Source.upstream_name``) and re-encoded the same way (the transform, which decodes
    it); no sha256 of upstream's WAVs is known and Opus bytes are not reproducible across
    encoder builds, so none is checked by sha256, and a warning says so.

  To have every byte checked, download from a mirror of the reference copy (``base_url=`` or
  ``POLYMODAL_MIRROR``).

Downloads stream to ``<file>.part`` and are moved into place with :func:`os.replace` only
after the checksum passed, so an interrupted or corrupt download never leaves a file that
looks complete (a file from upstream is also transformed and checked before it is moved into
place), and each folder's marker file (what ``locate`` looks for) is fetched last, so a
half-downloaded folder is not mistaken for a complete one.  Files already present with the
right checksum are skipped, so a download is resumed by running it again.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from importlib import resources
from pathlib import Path
from typing import Any

from polymodal.data.paths import cache_dir
from polymodal.data.upstream import DATASET_SOURCES as DATASET_SOURCES  # re-exported
from polymodal.data.upstream import SOURCES, Source, _sources_of
from polymodal.data.upstream import _keep_flickr8k_lines as _keep_flickr8k_lines
from polymodal.errors import unknown_name_error

MIRROR_ENV_VAR = "POLYMODAL_MIRROR"
_CHUNK = 1 << 20
_USER_AGENT = "polymodal-download/0.1 (+https://github.com/)"


class DownloadError(OSError):
    """A file could not be fetched; the message names the URL, the cause and the fix."""


class ChecksumError(DownloadError):
    """A file's sha256 is not the manifest's; the message names the file, expected and got."""


def load_manifest(source: str) -> dict[str, Any]:
    """The manifest of source folder ``source`` (``{"files": {rel: sha256}, ...}``)."""
    if source not in SOURCES:
        raise unknown_name_error("source folder", source, list(SOURCES))
    pkg = resources.files("polymodal.data") / "datasets" / "checksums" / f"{source}.json"
    try:
        text = pkg.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No checksum manifest for {source!r} at {pkg}; the polymodal install is "
            "incomplete (package data checksums/*.json). Reinstall polymodal."
        ) from None
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _gunzip_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_url(url: str, timeout: float) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(req, timeout=timeout)


def fetch(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest`` atomically, optionally checking its sha256.

    The body is streamed to ``dest + ".part"``; on success the part file is moved onto
    ``dest`` with :func:`os.replace`.  Network errors and HTTP 408/429/5xx are retried
    ``retries`` times with a short backoff; other HTTP errors (404, 403, ...) fail at once.

    Args:
        url: an ``http://``, ``https://`` or ``file://`` URL.
        dest: the file to write; parent folders are created.
        sha256: the expected hex digest, or ``None`` to skip the check.
        retries: attempts in all (at least 1).
        timeout: seconds to wait for the server on each attempt.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: the URL could not be fetched; names the URL and the HTTP status/cause.
        ChecksumError: the bytes' sha256 is not ``sha256``; names ``dest``, both digests. The
            partial file is deleted and ``dest`` is left untouched.
    """
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in (
        "http",
        "https",
        "file",
    ):
        raise ValueError(f"fetch(url=...) must be an http(s):// or file:// URL, got {url!r}.")
    if retries < 1:
        raise ValueError(f"fetch(retries=...) must be at least 1, got {retries}.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last: Exception | None = None
    for attempt in range(retries):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        h = hashlib.sha256()
        try:
            with _open_url(url, timeout) as resp, open(part, "wb") as out:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as e:
            part.unlink(missing_ok=True)
            last = e
            if e.code in (408, 429) or e.code >= 500:
                continue
            raise DownloadError(
                f"Could not download {url}: HTTP {e.code} {e.reason}. Check that the file "
                f"exists there (for a mirror: laid out like the data root, <base_url>/"
                f"<folder>/<file>), or pass base_url=/set {MIRROR_ENV_VAR} to another mirror."
            ) from e
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            part.unlink(missing_ok=True)
            last = e
            continue
        got = h.hexdigest()
        if sha256 is not None and got != sha256.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"Checksum mismatch for {dest} (from {url}): expected sha256 {sha256}, got "
                f"{got}. The partial download was deleted. The source copy is corrupt or has "
                f"changed; try again later, or point base_url/{MIRROR_ENV_VAR} at a good mirror."
            )
        os.replace(part, dest)
        return dest
    raise DownloadError(
        f"Could not download {url} after {retries} attempt(s): {last}. Check the network "
        f"connection, or pass base_url=/set {MIRROR_ENV_VAR} to a reachable mirror."
    )


def _target_dir(source: Source, root: str | os.PathLike[str] | None) -> Path:
    if root is None:
        return cache_dir() / source.name
    r = Path(root).expanduser()
    # Accept the source folder itself as well as a parent holding it (as ``locate`` does).
    return r if r.name == source.name else r / source.name


def _fetch_one(
    source: Source,
    rel: str,
    expected: str,
    dest_dir: Path,
    mirror: str | None,
    content: dict[str, str],
    retries: int,
    timeout: float,
) -> bool:
    """Fetch file ``rel`` of ``source`` into ``dest_dir`` unless it is there and checks out.

    Returns:
        Whether the file was fetched from upstream without a sha256 check
        (``Source.unchecked``), for :func:`download_dataset`'s warning.

    Raises:
        DownloadError: the file could not be fetched, or upstream's bytes are not what the
            transform expects.
        ChecksumError: the sha256 is not the manifest's; names the file, both digests.
    """
    dest = dest_dir / rel
    if mirror is not None:
        if dest.is_file() and sha256_file(dest) == expected:
            return False
        url = f"{mirror.rstrip('/')}/{source.name}/{urllib.parse.quote(rel)}"
        fetch(url, dest, expected, retries, timeout)
        return False
    url = source.upstream_url(rel)
    if source.matches_upstream(rel):
        if dest.is_file() and sha256_file(dest) == expected:
            return False
        fetch(url, dest, expected, retries, timeout)
        return False
    content_sha256 = content.get(rel)
    unchecked = content_sha256 is None and source.is_unchecked(rel)
    if dest.is_file() and (
        sha256_file(dest) == expected  # the reference copy's bytes
        or (content_sha256 is not None and _gunzip_sha256_or_none(dest) == content_sha256)
        or (unchecked and dest.stat().st_size > 0)  # moved into place only once complete
    ):
        return False
    # Fetched beside dest, checked (and transformed) there, then moved into place.
    raw = dest.with_name(dest.name + ".upstream")
    fetch(url, raw, None, retries, timeout)
    try:
        if content_sha256 is not None:
            got = _gunzip_sha256_or_none(raw) or "(not a gzip file)"
            if got != content_sha256:
                raise ChecksumError(
                    f"Checksum mismatch for the decompressed content of {dest} (from {url}): "
                    f"expected sha256 {content_sha256}, got {got}. Nothing was kept; upstream "
                    f"changed or is corrupt. Point base_url/{MIRROR_ENV_VAR} at a good mirror."
                )
        data = raw.read_bytes()
        new = data
        if source.transform is not None:
            try:
                new = source.transform(rel, data)
            except ValueError as e:
                raise DownloadError(f"{e} (from {url})") from e
        if content_sha256 is None and not unchecked:
            got = hashlib.sha256(new).hexdigest()
            if got != expected:
                raise ChecksumError(
                    f"Checksum mismatch for {dest} (from {url}"
                    + (", after the download's filter" if new is not data else "")
                    + f"): expected sha256 {expected}, got {got}. Nothing was kept; upstream "
                    f"changed or is corrupt. Point base_url/{MIRROR_ENV_VAR} at a good mirror."
                )
        if new is not data:
            raw.write_bytes(new)
        os.replace(raw, dest)
    finally:
        raw.unlink(missing_ok=True)
    return unchecked


def _gunzip_sha256_or_none(path: Path) -> str | None:
    try:
        return _gunzip_sha256(path)
    except (OSError, EOFError):  # not gzip, or cut short
        return None


def download_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    *,
    workers: int = 8,
    retries: int = 3,
    timeout: float = 60,
) -> Path:
    """Fetch data set (or source folder) ``name`` and return the folder of its first source.

    Args:
        name: a built-in data set (``mosi``, ``av_digits``, ``flickr8k``,
            ``har_phone_watch``) or a source folder (``fsdd``, ``mnist``, ...).
            ``av_digits`` fetches both ``fsdd`` and ``mnist``.
        root: where to put the files: ``<root>/<folder>/`` (or ``root`` itself when its
            last component already is the folder name).  Default: the user cache,
            :func:`polymodal.data.paths.cache_dir` ``/<folder>``.
        base_url: a mirror laid out like the data root (``<base_url>/<folder>/<file>``);
            default ``$POLYMODAL_MIRROR``, else the upstream sources in :data:`SOURCES`.
        workers: parallel downloads (FSDD has 3,000 files, Flickr8k 8,091 images).
        retries: attempts per file.
        timeout: seconds per request.

    Returns:
        The folder of ``name``'s first source (what ``locate`` looks for).

    Raises:
        DownloadError, ChecksumError: see :func:`fetch`; a file from upstream that fails
            its check (see the module) is not kept.

    Warns:
        UserWarning: files were fetched from upstream that no sha256 can check (Flickr8k's
            images, RAVDESS's recordings); the warning counts them.
    """
    sources = _sources_of(name)
    if workers < 1:
        raise ValueError(f"download_dataset(workers=...) must be at least 1, got {workers}.")
    mirror = base_url if base_url is not None else (os.environ.get(MIRROR_ENV_VAR) or None)
    folders: list[Path] = []
    for source in sources:
        manifest = load_manifest(source.name)
        files: dict[str, str] = manifest["files"]
        content: dict[str, str] = manifest.get("content_sha256", {})
        dest_dir = _target_dir(source, root)
        dest_dir.mkdir(parents=True, exist_ok=True)
        if source.marker not in files:
            raise ValueError(  # an inconsistency inside polymodal, not a user error
                f"Manifest of {source.name!r} lacks its marker file {source.marker!r}."
            )
        jobs = sorted((rel, sha) for rel, sha in files.items() if rel != source.marker)
        one = functools.partial(
            _fetch_one,
            source,
            dest_dir=dest_dir,
            mirror=mirror,
            content=content,
            retries=retries,
            timeout=timeout,
        )
        unchecked: list[str] = []
        if workers == 1 or len(jobs) <= 1:
            unchecked += [rel for rel, sha in jobs if one(rel, sha)]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
                futs = [pool.submit(one, rel, sha) for rel, sha in jobs]
                _done, pending = wait(futs, return_when=FIRST_EXCEPTION)
                for f in pending:
                    f.cancel()
                for f in futs:
                    if f.done() and not f.cancelled() and f.exception() is not None:
                        raise f.exception()  # type: ignore[misc]
                unchecked += [rel for (rel, _), f in zip(jobs, futs, strict=True) if f.result()]
        # The marker last: its presence means every other file is in place.
        if one(source.marker, files[source.marker]):
            unchecked.append(source.marker)
        if unchecked:
            warnings.warn(
                f"{len(unchecked)} file(s) of {source.name!r} were fetched from upstream "
                f"without a sha256 check (e.g. {unchecked[0]}): no checksum of upstream's "
                "bytes is known for them, because the reference copy holds re-encoded "
                "versions. Each was decoded once. To verify every byte, download from a "
                f"mirror of the reference copy (base_url= or {MIRROR_ENV_VAR}).",
                UserWarning,
                stacklevel=2,
            )
        folders.append(dest_dir)
    return folders[0]


def _source_folder(source: Source, folder: Path, single: bool) -> Path:
    sub = folder / source.name
    if sub.is_dir():
        return sub
    if single or folder.name == source.name:
        return folder
    raise FileNotFoundError(
        f"verify: no {source.name!r} folder under {folder}; pass the folder holding "
        f"'{source.name}/'."
    )


def verify(name: str, folder: str | os.PathLike[str]) -> int:
    """Check every file of ``name``'s manifest(s) in ``folder``; return how many were checked.

    Args:
        name: a data set or source folder name (see :func:`download_dataset`).
        folder: the source folder itself, or a folder holding ``<source>/`` (for
            ``av_digits``: a folder holding both ``fsdd/`` and ``mnist/``).

    Raises:
        ChecksumError: lists the missing files and the files whose sha256 differs (up to 10
            of each, with the totals).
    """
    sources = _sources_of(name)
    base = Path(folder).expanduser()
    missing: list[str] = []
    bad: list[str] = []
    checked = 0
    for source in sources:
        src_dir = _source_folder(source, base, len(sources) == 1)
        files: dict[str, str] = load_manifest(source.name)["files"]
        for rel, sha in sorted(files.items()):
            path = src_dir / rel
            checked += 1
            if not path.is_file():
                missing.append(f"{source.name}/{rel}")
            elif sha256_file(path) != sha:
                bad.append(f"{source.name}/{rel}")
    if missing or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {', '.join(missing[:10])}")
        if bad:
            parts.append(f"{len(bad)} with a different sha256: {', '.join(bad[:10])}")
        raise ChecksumError(
            f"verify({name!r}, {str(base)!r}): {checked} files checked; "
            + "; ".join(parts)
            + ". Fix: download again (download=True re-fetches files that fail the check)."
        )
    return checked


def build_manifest(
    source: str, folder: str | os.PathLike[str], note: str = "", gzip_content: bool = False
) -> dict[str, Any]:
    """The manifest of ``folder`` (every file under it) for source folder ``source``.

    For maintainers: ``json.dump(build_manifest("mosi", "<data root>/mosi"), ...)`` into
    ``checksums/mosi.json``.  With ``gzip_content`` the sha256 of each ``.gz`` file's
    decompressed bytes is stored too (``content_sha256``).  ``mnist``'s ``train-images``
    entry there is upstream's, not the reference copy's (see the module): keep it by hand.
    """
    if source not in SOURCES:
        raise unknown_name_error("source folder", source, list(SOURCES))
    base = Path(folder)
    if not base.is_dir():
        raise FileNotFoundError(f"build_manifest: folder {base} does not exist.")
    paths: Iterable[Path] = sorted(p for p in base.rglob("*") if p.is_file())
    files: dict[str, str] = {}
    content: dict[str, str] = {}
    total = 0
    for p in paths:
        rel = p.relative_to(base).as_posix()
        if rel.endswith(".part"):
            continue
        files[rel] = sha256_file(p)
        total += p.stat().st_size
        if gzip_content and rel.endswith(".gz"):
            content[rel] = _gunzip_sha256(p)
    out: dict[str, Any] = {
        "name": source,
        "upstream": SOURCES[source].upstream,
        "note": note,
        "file_count": len(files),
        "total_bytes": total,
        "files": files,
    }
    if content:
        out["content_sha256"] = content
    return out


def write_manifest(manifest: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``manifest`` as compact, sorted, one-file-per-line JSON."""
    lines = ["{"]
    head = {k: v for k, v in manifest.items() if k not in ("files", "content_sha256")}
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    for key in ("content_sha256", "files"):
        if key not in manifest:
            continue
        items = sorted(manifest[key].items())
        lines.append(f"  {json.dumps(key)}: {{")
        lines += [
            f"    {json.dumps(r)}: {json.dumps(s)}" + ("," if i < len(items) - 1 else "")
            for i, (r, s) in enumerate(items)
        ]
        lines.append("  }," if key != "files" else "  }")
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
