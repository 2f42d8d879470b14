"""``polymodal datasets download``: from a small mirror on 127.0.0.1, with checksums; clear
errors for an unknown name and an unreachable or incomplete mirror."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import polymodal.data.download as download_mod
from polymodal.cli.main import main
from polymodal.data.download import MIRROR_ENV_VAR, SOURCES
from tests.data.test_download import _serve

MARKER = SOURCES["mosi"].marker
FILES = {MARKER: b"id,text\nv1_1,hello\n", "README.md": b"a tiny mosi\n"}


@pytest.fixture
def tiny_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A mirror of a two-file ``mosi`` whose manifest polymodal checks against."""
    folder = tmp_path / "mirror"
    for rel, data in FILES.items():
        (folder / "mosi" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "mosi" / rel).write_bytes(data)
    sums = {rel: hashlib.sha256(data).hexdigest() for rel, data in FILES.items()}

    def manifest(source: str) -> dict[str, Any]:
        assert source == "mosi"
        return {"files": sums}

    monkeypatch.setattr(download_mod, "load_manifest", manifest)
    monkeypatch.delenv(MIRROR_ENV_VAR, raising=False)
    server, url = _serve(folder)
    yield url
    server.shutdown()
    server.server_close()


def test_download_from_a_mirror(
    tiny_mirror: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    argv = ["datasets", "download", "mosi", "--root", str(root), "--base-url", tiny_mirror]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"mosi: in {root / 'mosi'}" in out
    assert "verified: 2 files, each with the sha256 of the reference copy" in out
    assert (root / "mosi" / MARKER).read_bytes() == FILES[MARKER]


def test_download_from_the_mirror_variable(
    tiny_mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV_VAR, tiny_mirror)
    assert main(["datasets", "download", "mosi", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "mosi" / "README.md").is_file()


def test_unknown_name_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "download", "mosii", "--base-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "Unknown data set 'mosii'. Valid data sets: av_digits, " in err
    assert "Did you mean 'mosi'?" in err


def test_a_file_missing_from_the_mirror(
    tiny_mirror: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = tiny_mirror + "/elsewhere"
    assert main(["datasets", "download", "mosi", "--root", str(tmp_path), "--base-url", url]) == 2
    err = capsys.readouterr().err
    assert f"Could not download {url}/mosi/README.md: HTTP 404" in err
    assert "--base-url" in err and "base_url=" not in err and MIRROR_ENV_VAR in err
    assert not (tmp_path / "mosi" / MARKER).exists()  # the marker comes last


def test_an_unreachable_mirror(
    tiny_mirror: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(download_mod.time, "sleep", lambda seconds: None)  # no backoff
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert main(["datasets", "download", "mosi", "--root", str(tmp_path), "--base-url", url]) == 2
    err = capsys.readouterr().err
    assert f"Could not download {url}/mosi/" in err and "after 3 attempt(s)" in err
    assert "reachable mirror" in err and "--base-url" in err
    assert main(["datasets", "download", "mosi", "--base-url", "ftp://x"]) == 2
    assert "--base-url (or $POLYMODAL_MIRROR) must be an http://" in capsys.readouterr().err
