"""Downloads from a local HTTP mirror (no internet): atomic fetch, checksums, clear errors."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import threading
import warnings
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import polymodal.data.download as download_mod
from polymodal.data.datasets import load_dataset
from polymodal.data.datasets._common import INFOS
from polymodal.data.datasets.av_digits import MNIST_INFO
from polymodal.data.download import (
    DATASET_SOURCES,
    MIRROR_ENV_VAR,
    SOURCES,
    ChecksumError,
    DownloadError,
    Source,
    _fetch_one,
    _keep_flickr8k_lines,
    download_dataset,
    fetch,
    load_manifest,
    verify,
)
from polymodal.data.upstream import _flickr8k_from_upstream


class _QuietHandler(SimpleHTTPRequestHandler):
    fail_first: int = 0  # answer this many requests with 503 before serving

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        cls = type(self)
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_error(503, "try again")
            return
        super().do_GET()


def _serve(directory: Path, fail_first: int = 0) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Handler", (_QuietHandler,), {"fail_first": fail_first})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    port = server.server_address[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
def mirror(data_root: Path) -> Iterator[str]:
    server, url = _serve(data_root)
    yield url
    server.shutdown()
    server.server_close()


def test_download_mosi_from_mirror_then_load(
    mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV_VAR, mirror)
    # download=True goes through locate() -> download_dataset() into root/<folder>.
    ds = load_dataset("mosi", split="test", root=tmp_path, download=True)
    assert len(ds) == 752
    folder = tmp_path / "mosi"
    assert verify("mosi", folder) == len(load_manifest("mosi")["files"]) == 10
    assert not list(folder.rglob("*.part"))
    # Present and verified files are not fetched again: an empty mirror still succeeds.
    empty = tmp_path / "empty"
    empty.mkdir()
    server, url = _serve(empty)
    try:
        assert download_dataset("mosi", root=tmp_path, base_url=url) == folder
    finally:
        server.shutdown()
        server.server_close()
    # verify() names a file whose bytes changed.
    target = folder / "data" / "video" / "video_test0.csv"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(
        ChecksumError, match=r"1 with a different sha256: mosi/data/video/video_test0"
    ):
        verify("mosi", tmp_path)


def test_corrupt_mirror_file_fails_checksum_and_leaves_nothing(
    data_root: Path, tmp_path: Path
) -> None:
    src = data_root / "mosi"
    bad = tmp_path / "mirror" / "mosi"
    for f in src.rglob("*"):
        if f.is_file():
            dst = bad / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(f)
    transcripts = bad / "data" / "transcripts.csv"
    transcripts.unlink()
    text = (src / "data" / "transcripts.csv").read_text()
    transcripts.write_text(text.replace("ANYHOW IT WAS REALLY GOOD", "ANYHOW IT WAS REALLY BAD"))
    server, url = _serve(tmp_path / "mirror")
    try:
        with pytest.raises(
            ChecksumError,
            match=r"Checksum mismatch for .*data/transcripts\.csv.*expected sha256 [0-9a-f]{64}, "
            r"got [0-9a-f]{64}",
        ):
            download_dataset("mosi", root=tmp_path / "out", base_url=url, workers=1)
    finally:
        server.shutdown()
        server.server_close()
    out = tmp_path / "out" / "mosi" / "data"
    # transcripts.csv is mosi's marker, fetched last: the folder is not taken as complete.
    assert not (out / "transcripts.csv").exists()
    assert (out / "video" / "video_test0.csv").is_file()
    assert not list((tmp_path / "out").rglob("*.part"))


def test_missing_file_is_a_clear_404(tmp_path: Path) -> None:
    server, url = _serve(tmp_path)
    try:
        with pytest.raises(DownloadError, match=rf"{url}/mosi/.*HTTP 404"):
            download_dataset("mosi", root=tmp_path / "out", base_url=url, workers=1)
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_checks_sha256_and_retries_server_errors(data_root: Path, tmp_path: Path) -> None:
    rel = "mosi/data/transcripts.csv"
    digest = hashlib.sha256((data_root / rel).read_bytes()).hexdigest()
    server, url = _serve(data_root, fail_first=1)
    try:
        dest = fetch(f"{url}/{rel}", tmp_path / "t.csv", sha256=digest, retries=2, timeout=10)
        assert dest.read_bytes() == (data_root / rel).read_bytes()
        with pytest.raises(ChecksumError, match=rf"{tmp_path / 'x.csv'}.*expected sha256 0{{64}}"):
            fetch(f"{url}/{rel}", tmp_path / "x.csv", sha256="0" * 64)
        assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.part").exists()
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ValueError, match="http"):
        fetch("ftp://example.org/x", tmp_path / "y")


def test_manifests_match_the_shared_data(data_root: Path) -> None:
    for source in SOURCES:
        files = load_manifest(source)["files"]
        folder = data_root / source
        on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert set(files) == on_disk, source
    assert verify("mosi", data_root) == 10
    assert verify("mnist", data_root / "mnist") == 4


def test_upstream_layout_and_flickr_filter() -> None:
    mosi = SOURCES["mosi"]
    assert mosi.upstream_url("data/transcripts.csv").endswith(
        "contextual-utterance-level-multimodal-sentiment-analysis/3874cf2/data/transcripts.csv"
    )
    assert mosi.upstream_url("UPSTREAM_README.md").endswith("/3874cf2/README.md")
    assert (
        SOURCES["fsdd"]
        .upstream_url("recordings/0_george_0.wav")
        .endswith("free-spoken-digit-dataset/26eb9aa/recordings/0_george_0.wav")
    )
    flickr = SOURCES["flickr8k"]
    assert flickr.upstream_url("images/1000268201_693b08cb0e.jpg").endswith(
        "Image-Text-Matching/3d5693b/data/images/1000268201_693b08cb0e.jpg"
    )
    assert flickr.upstream_url("Flickr8k.token.txt").endswith("Flickr8k_text/Flickr8k.token.txt")
    assert SOURCES["har_phone_watch"].upstream_url("zenodo.json").endswith("/1408d85/.zenodo.json")
    token = (
        b"99679241_adc853a5c0.jpg#4\tA white crane stands tall .\n"
        b"e667626_18933d713e.jpg#0\tA white bird with yellow legs .\n"
        b"e10815824_2997e03d76.png#0\tA small bird .\n"
    )
    assert _keep_flickr8k_lines("Flickr8k.token.txt", token) == (
        b"99679241_adc853a5c0.jpg#4\tA white crane stands tall .\n"
    )
    split = b"2671602981_4edde92658.jpg\ne72218201_e0e9c7d65b.png \n"
    assert _keep_flickr8k_lines("Flickr_8k.trainImages.txt", split) == (
        b"2671602981_4edde92658.jpg\n"
    )


def test_unknown_data_set_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown downloadable data set 'mosii'.*'mosi'"):
        download_dataset("mosii", root=tmp_path)


def test_each_data_set_has_sources_whose_markers_match_its_loader() -> None:
    assert set(DATASET_SOURCES) == set(INFOS)
    for name, info in INFOS.items():
        first = SOURCES[DATASET_SOURCES[name][0]]
        assert (first.name, first.marker) == (info.subdir, info.marker), name
        assert first.marker in load_manifest(first.name)["files"]
    assert SOURCES["mnist"].marker == MNIST_INFO.marker


def test_upstream_policy_filters_text_and_checks_gzip_content(
    data_root: Path, tmp_path: Path
) -> None:
    up = tmp_path / "upstream"
    up.mkdir()
    (up / "Flickr8k.token.txt").write_bytes(
        b"99679241_adc853a5c0.jpg#0\tA bird .\ne667626_18933d713e.jpg#0\tNot Flickr8k .\n"
    )
    labels = (data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    # The same content in another gzip container (as upstream's files are).
    (up / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(labels), 1))
    (up / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the labels"))
    content = load_manifest("mnist")["content_sha256"]
    server, url = _serve(up)
    try:
        flickr = Source(
            "flickr8k", "test", "x", (("", url + "/"),), ("",), transform=_keep_flickr8k_lines
        )
        kept = b"99679241_adc853a5c0.jpg#0\tA bird .\n"
        digest = hashlib.sha256(kept).hexdigest()  # checked after the filter
        _fetch_one(flickr, "Flickr8k.token.txt", digest, tmp_path / "f", None, {}, 1, 10)
        got = (tmp_path / "f" / "Flickr8k.token.txt").read_bytes()
        assert got == kept
        mnist = Source("mnist", "test", "x", (("", url + "/"),), ("",))
        rel = "t10k-labels-idx1-ubyte.gz"
        _fetch_one(mnist, rel, "0" * 64, tmp_path / "m", None, content, 1, 10)
        assert gzip.decompress((tmp_path / "m" / rel).read_bytes()) == gzip.decompress(labels)
        with pytest.raises(ChecksumError, match=r"decompressed content of .*train-labels"):
            _fetch_one(
                mnist, "train-labels-idx1-ubyte.gz", "0" * 64, tmp_path / "m", None, content, 1, 10
            )
        assert not (tmp_path / "m" / "train-labels-idx1-ubyte.gz").exists()
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An empty folder served over HTTP on 127.0.0.1, standing in for an upstream."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    server, url = _serve(folder)
    yield folder, url
    server.shutdown()
    server.server_close()


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".part", ".upstream"))]


def test_every_mnist_file_from_upstream_is_checked(
    data_root: Path, tmp_path: Path, upstream: tuple[Path, str]
) -> None:
    manifest = load_manifest("mnist")
    content = manifest["content_sha256"]
    assert set(content) == set(manifest["files"])  # train-images too
    up, url = upstream
    mnist = dataclasses.replace(SOURCES["mnist"], layout=(("", url + "/"),))
    rel = "train-images-idx3-ubyte.gz"
    # The reference copy's train-images is a rebuild, not upstream's original content.
    rebuilt = (data_root / "mnist" / rel).read_bytes()
    (up / rel).write_bytes(rebuilt)
    got = hashlib.sha256(gzip.decompress(rebuilt)).hexdigest()
    with pytest.raises(
        ChecksumError,
        match=rf"decompressed content of .*{rel} \(from {url}/{rel}\): expected sha256 "
        rf"ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db, got {got}\. "
        r"Nothing was kept",
    ):
        _fetch_one(mnist, rel, manifest["files"][rel], tmp_path / "m", None, content, 1, 10)
    (up / rel).write_bytes(b"<html>rate limited</html>")
    with pytest.raises(ChecksumError, match=rf"{rel}.*got \(not a gzip file\)"):
        _fetch_one(mnist, rel, manifest["files"][rel], tmp_path / "m", None, content, 1, 10)
    assert not (tmp_path / "m" / rel).exists() and not _leftovers(tmp_path)
    # A file already there is kept only if it checks out; otherwise it is fetched again.
    labels = "t10k-labels-idx1-ubyte.gz"
    (up / labels).write_bytes((data_root / "mnist" / labels).read_bytes())
    (tmp_path / "m" / labels).write_bytes(gzip.compress(b"left over from a bad run"))
    assert _fetch_one(mnist, labels, "0" * 64, tmp_path / "m", None, content, 1, 10) is False
    assert (tmp_path / "m" / labels).read_bytes() == (up / labels).read_bytes()


def test_flickr8k_text_from_upstream_is_checked_after_the_filter(
    data_root: Path, tmp_path: Path, upstream: tuple[Path, str]
) -> None:
    up, url = upstream
    flickr = dataclasses.replace(
        SOURCES["flickr8k"], layout=(("images/", url + "/images/"), ("", url + "/"))
    )
    rel = "Flickr_8k.devImages.txt"
    expected = load_manifest("flickr8k")["files"][rel]
    ours = (data_root / "flickr8k" / rel).read_bytes()
    # Upstream's list carries bird pictures that are not Flickr8k's: filtered, then checked.
    (up / rel).write_bytes(ours + b"e667626_18933d713e.jpg\r\ne10815824_2997e03d76.png\r\n")
    assert _fetch_one(flickr, rel, expected, tmp_path / "f", None, {}, 1, 10) is False
    assert (tmp_path / "f" / rel).read_bytes() == ours
    (tmp_path / "f" / rel).unlink()
    (up / rel).write_bytes(ours.replace(b"2090545563_a4e66ec76b.jpg\n", b""))  # one line lost
    got = hashlib.sha256(ours.replace(b"2090545563_a4e66ec76b.jpg\n", b"")).hexdigest()
    with pytest.raises(
        ChecksumError,
        match=rf"Checksum mismatch for .*{rel} \(from {url}/{rel}, after the download's "
        rf"filter\): expected sha256 {expected}, got {got}\.",
    ):
        _fetch_one(flickr, rel, expected, tmp_path / "f", None, {}, 1, 10)
    assert not (tmp_path / "f" / rel).exists() and not _leftovers(tmp_path)


def test_unverifiable_upstream_files_are_decoded_and_reported(
    data_root: Path, tmp_path: Path, upstream: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    up, url = upstream
    marker = "Flickr_8k.devImages.txt"  # a small marker for this small copy
    flickr = dataclasses.replace(
        SOURCES["flickr8k"],
        marker=marker,
        layout=(("images/", url + "/images/"), ("", url + "/")),
    )
    images = sorted((data_root / "flickr8k" / "images").iterdir())[:2]
    (up / "images").mkdir()
    for img in images:
        (up / "images" / img.name).write_bytes(img.read_bytes())
    (up / marker).write_bytes((data_root / "flickr8k" / marker).read_bytes())
    files = {f"images/{img.name}": "0" * 64 for img in images}  # upstream's: unknown
    files[marker] = load_manifest("flickr8k")["files"][marker]
    monkeypatch.setattr(download_mod, "_sources_of", lambda name: [flickr])
    monkeypatch.setattr(download_mod, "load_manifest", lambda name: {"files": files})
    with pytest.warns(
        UserWarning,
        match=r"2 file\(s\) of 'flickr8k' were fetched from upstream without a sha256 check "
        r"\(e\.g\. images/.*\.jpg\).*mirror of the reference copy",
    ):
        folder = download_dataset("flickr8k", root=tmp_path / "out", workers=2)
    assert sorted(p.name for p in (folder / "images").iterdir()) == [i.name for i in images]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resumed: nothing fetched, nothing to report
        download_dataset("flickr8k", root=tmp_path / "out", workers=1)
    # An error page instead of an image is refused, naming the file.
    (up / "images" / images[0].name).write_bytes(b"<html>404</html>")
    with pytest.raises(
        DownloadError,
        match=rf"Flickr8k download images/{images[0].name}: .*"
        r"not a readable image",
    ):
        _fetch_one(flickr, f"images/{images[0].name}", "0" * 64, tmp_path / "x", None, {}, 1, 10)
    assert not list((tmp_path / "x").rglob("*.jpg")) and not _leftovers(tmp_path / "x")
    assert _flickr8k_from_upstream("Flickr8k.token.txt", b"e1_2.png#0\tA bird .\n") == b"\n"


def test_ravdess_error_page_is_refused(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    up, url = upstream
    ravdess = dataclasses.replace(SOURCES["ravdess_speech"], layout=(("", url + "/"),))
    rel = "Actor_01/03-01-01-01-01-01-01.ogg"
    (up / "Actor_01").mkdir()
    (up / "Actor_01" / "03-01-01-01-01-01-01.wav").write_bytes(b"<html>404</html>")
    with pytest.raises(DownloadError, match=rf"RAVDESS download {rel}: .*not a WAV file"):
        _fetch_one(ravdess, rel, "0" * 64, tmp_path / "r", None, {}, 1, 10)
    assert not (tmp_path / "r" / rel).exists() and not _leftovers(tmp_path / "r")
