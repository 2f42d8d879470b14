"""Downloads from a local HTTP mirror (no internet): atomic fetch, checksums, clear errors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

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
        flickr = Source("flickr8k", "test", "x", (("", url + "/"),), ("",), _keep_flickr8k_lines)
        _fetch_one(flickr, "Flickr8k.token.txt", "0" * 64, tmp_path / "f", None, {}, 1, 10)
        got = (tmp_path / "f" / "Flickr8k.token.txt").read_bytes()
        assert got == b"99679241_adc853a5c0.jpg#0\tA bird .\n"
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
