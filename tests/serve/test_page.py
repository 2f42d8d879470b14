"""The page at ``/`` driven in headless Chromium: search, predict, the sentiment plot.

Needs Python's ``playwright`` and Debian's Chromium (``apt-get install chromium``) at
``/usr/bin/chromium`` (no browser download).  Where either is missing the test skips,
except under ``CI=true``, where it fails: CI installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polymodal import load_dataset
from tests.conftest import require

CHROMIUM = Path(os.environ.get("POLYMODAL_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> Path:
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} is missing; apt-get install chromium (or set POLYMODAL_CHROMIUM)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}.")
        pytest.skip(reason)
    return CHROMIUM


def _utterances() -> list[dict[str, Any]]:
    return [
        {"start": 0.0, "end": 1.5, "text": "i loved it", "score": 0.8, "label": "positive"},
        {"start": 1.5, "end": 3.0, "text": "but the end", "score": -0.4, "label": "negative"},
        {"start": 3.0, "end": 4.0, "text": "was fine", "score": 0.02, "label": "neutral"},
    ]


@pytest.fixture()
def server(served: dict[str, Any]) -> Iterator[str]:
    """The app on 127.0.0.1 in a thread, with a stand-in sentiment analyser."""
    uvicorn = require("uvicorn")
    from polymodal.serve.app import create_app

    app = create_app(
        [served["predictor"]],
        [served["searcher"]],
        sentiment=lambda path: {"video": path.name, "utterances": _utterances()},
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(500):  # start-up, not a measurement: up to 10 s
        if srv.started:
            break
        time.sleep(0.02)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_page_searches_predicts_and_plots(server: str, tmp_path: Path) -> None:
    require("playwright")
    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    row = load_dataset("mosi", split="test", modalities=("text", "audio"))[0]
    text_features = str(row.modalities["text"].tolist())  # type: ignore[union-attr]
    shot = tmp_path / "serve_page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(executable), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            external: list[str] = []
            page.on(
                "request",
                lambda r: external.append(r.url) if not r.url.startswith(server) else None,
            )
            page.goto(server + "/")
            expect(page.locator("body[data-ready='1']")).to_have_count(1)
            # search: type a query, see a grid of hits with loaded thumbnails
            page.fill("#search-text", "a dog runs on the grass")
            page.fill("#search-k", "6")
            page.click("#search-go")
            expect(page.locator("#hits .hit")).to_have_count(6)
            expect(page.locator("#hits .hit figcaption li").first).not_to_be_empty()
            # thumbnails load after the grid appears: wait until each has (or failed to)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#hits img')].every(i => i.complete)"
            )
            loaded = page.eval_on_selector_all(
                "#hits img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
            )
            assert loaded == [True] * 6
            # predict: the form has a field per input; fill one, leave the other missing
            expect(page.locator("#predict-fields textarea")).to_have_count(2)
            page.fill("#in-text", text_features)
            page.click("#predict-go")
            expect(page.locator("#predict-result .result-label")).to_have_text(
                re.compile("^(negative|positive)$")
            )
            expect(page.locator("#predict-result .bar")).to_have_count(2)
            # a bad value: the error names the field
            page.fill("#in-audio", "[1, 2]")
            page.click("#predict-go")
            expect(page.locator("#predict-error")).to_contain_text("inputs.audio")
            # sentiment: upload a clip, see the timeline and the utterance table
            clip = tmp_path / "clip.mp4"
            clip.write_bytes(b"\x00" * 64)
            page.set_input_files("#sentiment-file", str(clip))
            page.click("#sentiment-go")
            expect(page.locator("#timeline rect.utterance")).to_have_count(3)
            expect(page.locator("#sentiment-table tbody tr")).to_have_count(3)
            expect(page.locator("#sentiment-table tbody tr").nth(1)).to_contain_text("negative")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert external == []  # nothing loaded from outside the server (no CDN)
    assert shot.stat().st_size > 10_000
    artefacts = os.environ.get("POLYMODAL_TEST_ARTEFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artefacts) / shot.name)
