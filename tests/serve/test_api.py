"""The HTTP API on a tiny trained MOSI run and a tiny Flickr8k index (httpx TestClient)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from polymodal import load_dataset


def _mosi_rows(n: int) -> list[dict[str, Any]]:
    ds = load_dataset("mosi", split="test", modalities=("text", "audio"))
    return [
        {"id": ds[i].id, **{m: ds[i].modalities[m].tolist() for m in ("text", "audio")}}  # type: ignore[union-attr]
        for i in range(n)
    ]


def test_predict_matches_the_model_on_the_data_set(client: Any, served: dict[str, Any]) -> None:
    from polymodal.data.collate import collate
    from polymodal.data.sample import Sample

    predictor = served["predictor"]
    rows = _mosi_rows(3)
    for row in rows:
        r = client.post("/predict", json={"inputs": {"text": row["text"], "audio": row["audio"]}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "mosi_tiny" and body["task"] == "classification"
        probs = body["probabilities"]
        assert set(probs) == {"negative", "positive"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert body["label"] == max(probs, key=probs.get)
        sample = Sample("x", {m: torch.tensor(row[m]) for m in ("text", "audio")})
        with torch.no_grad():
            logits = predictor.model(collate([sample], predictor.schema)).logits
        expected = torch.softmax(logits[0], -1)[1].item()
        assert probs["positive"] == pytest.approx(expected, abs=1e-5)


def test_a_missing_modality_is_allowed_and_changes_the_answer(client: Any) -> None:
    row = _mosi_rows(1)[0]
    both = client.post("/predict", json={"inputs": {"text": row["text"], "audio": row["audio"]}})
    text_only = client.post("/predict", json={"inputs": {"text": row["text"]}})
    assert text_only.status_code == 200
    assert text_only.json()["probabilities"] != both.json()["probabilities"]


def test_concurrent_predictions_are_batched(client: Any, served: dict[str, Any]) -> None:
    import concurrent.futures

    rows = _mosi_rows(8)
    app_batchers = client.app.state.batchers
    before = dict(app_batchers["predict:mosi_tiny"].batch_sizes)

    def one(row: dict[str, Any]) -> dict[str, Any]:
        r = client.post("/predict", json={"inputs": {"text": row["text"]}})
        assert r.status_code == 200
        return dict(r.json()["probabilities"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, rows))
    alone = [one(row) for row in rows]  # batched rows equal rows predicted alone
    for a, b in zip(results, alone, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    after = app_batchers["predict:mosi_tiny"].batch_sizes
    assert sum(n * c for n, c in after.items()) - sum(n * c for n, c in before.items()) == 16
    metrics = client.get("/metrics").json()
    assert metrics["requests"]["/predict"]["200"] >= 16
    assert metrics["latency"]["/predict"]["p99_ms"] >= metrics["latency"]["/predict"]["p50_ms"]
    assert metrics["queue_depth"]["predict:mosi_tiny"] == 0
    assert "predict:mosi_tiny" in metrics["batch_sizes"]


@pytest.mark.parametrize(
    ("body", "status", "field", "match"),
    [
        ({"inputs": {"txt": "hi"}}, 400, "inputs.txt", "no input 'txt'.*Did you mean 'text'"),
        ({"inputs": {}}, 400, "inputs", "at least one"),
        ({"inputs": {"text": [1.0, 2.0]}}, 400, "inputs.text", "expected 100 numbers"),
        ({"inputs": {"text": "/etc/passwd"}}, 400, "inputs.text", "JSON list of numbers"),
        ({"inputs": {"audio": [1.0, "x"] * 36 + [1.0]}}, 400, "inputs.audio", ""),
        (
            {"inputs": {"text": {"filename": "a.exe", "base64": "AA=="}}},
            415,
            "inputs.text",
            "a.exe",
        ),
        ({"inputs": "text"}, 400, "inputs", "expected an object"),
    ],
)
def test_bad_predict_requests_name_the_field(
    client: Any, body: dict[str, Any], status: int, field: str, match: str
) -> None:
    r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert match == "" or __import__("re").search(match, r.json()["error"])
    assert "Traceback" not in r.text


def test_body_type_and_size_limits(client: Any) -> None:
    r = client.post("/predict", content=b"x=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["field"] == "body"
    r = client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    big = b"0" * (1024 * 1024 + 512 * 1024)  # over the whole-body limit
    r = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"


def test_search_text_returns_hits_with_thumbnails(client: Any, flickr_index: Path) -> None:
    r = client.post("/search", json={"text": "a dog runs on the grass", "k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(len(h["captions"]) == 5 for h in hits)
    meta = json.loads((flickr_index / "metadata.json").read_text())
    thumb = client.get(hits[0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    paths = {m["example"]: m["path"] for m in meta}
    assert thumb.content == Path(paths[hits[0]["id"]]).read_bytes()


def test_search_by_uploaded_image_finds_itself(client: Any, flickr_index: Path) -> None:
    meta = json.loads((flickr_index / "metadata.json").read_text())
    data = Path(meta[3]["path"]).read_bytes()
    files = {"image": ("query.jpg", data, "image/jpeg")}
    r = client.post("/search", files=files, data={"k": "2"})
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["id"] == meta[3]["example"]
    assert r.json()["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    r2 = client.post("/search", json={"image": url, "k": 1})
    assert r2.json()["hits"][0]["id"] == meta[3]["example"]


def test_uploads_over_the_limit_or_of_the_wrong_type_are_refused(
    client: Any, flickr_index: Path
) -> None:
    big = b"\xff\xd8" + b"0" * (64 * 1024)  # over the 64 KiB per-file limit of the client
    r = client.post("/search", files={"image": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.json()["field"] == "image"
    assert "65,536 bytes" in r.json()["error"]
    r = client.post("/search", files={"image": ("x.exe", b"MZ", "application/octet-stream")})
    assert r.status_code == 415 and r.json()["field"] == "image"
    r = client.post("/search", json={"image": "data:text/html;base64,PGI+"})
    assert r.status_code == 415 and r.json()["field"] == "image"
    r = client.post("/search", files={"image": ("fake.jpg", b"not an image", "image/jpeg")})
    assert r.status_code == 400 and r.json()["field"] == "image"
    assert "/tmp" not in r.json()["error"]
    r = client.post("/search", files={"audio": ("a.wav", b"RIFF", "audio/wav")})
    assert r.status_code == 400 and "cannot embed a audio query" in r.json()["error"]
    r = client.post("/search", json={"text": "dog", "k": 0})
    assert r.status_code == 400 and r.json()["field"] == "k"
    r = client.post("/search", json={})
    assert r.status_code == 400 and r.json()["field"] == "query"
    r = client.post("/search?index=nope", json={"text": "dog"})
    assert r.status_code == 404 and r.json()["field"] == "index"


def test_thumbnails_refuse_traversal_absolute_paths_and_links_out(
    client: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    searcher = served["searcher"]
    root = searcher.root
    assert root is not None
    good = client.post("/search", json={"text": "dog", "k": 1}).json()["hits"][0]["thumbnail"]
    assert client.get(good).status_code == 200
    for bad in (
        "/thumbnails/flickr_index/../../../../etc/passwd",
        "/thumbnails/flickr_index/%2e%2e/%2e%2e/etc/passwd",
        "/thumbnails/flickr_index/..%2f..%2fetc%2fpasswd",
        "/thumbnails/flickr_index//etc/passwd",
        "/thumbnails/flickr_index/%2Fetc%2Fpasswd",
        "/thumbnails/flickr_index/not_in_the_index.jpg",
        "/thumbnails/other_index/" + good.split("/", 3)[3],
    ):
        r = client.get(bad)
        assert r.status_code == 404, bad
        assert r.json()["error"].startswith(("thumbnail:", "Not Found")), bad
    rel = good.split("/", 3)[3]
    assert searcher.thumbnail(rel) is not None
    for bad_rel in (
        f"../{Path(root).name}/{rel}",
        f"x/../{rel}",
        f"./{rel}",
        str(Path(root) / rel),
        "/etc/passwd",
        "",
    ):
        assert searcher.thumbnail(bad_rel) is None, bad_rel  # the raw paths, not URL-normalised
    # a file of the image folder that is not one of the index's items
    other = sorted(p.name for p in Path(root).glob("*.jpg"))
    listed = {p.name for p in searcher._files}
    stranger = next(n for n in other if n not in listed)
    assert client.get(f"/thumbnails/flickr_index/{stranger}").status_code == 404
    # a symbolic link out of the image folder, even when the index names it
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"secret")
    link_root = tmp_path / "images"
    link_root.mkdir()
    (link_root / "a.jpg").write_bytes(b"a")
    (link_root / "b.jpg").symlink_to(secret)
    searcher_files = searcher._files, searcher._allowed, searcher.root
    try:
        searcher._files = {link_root / "a.jpg", link_root / "b.jpg"}
        searcher._allowed = {p.resolve() for p in searcher._files}
        searcher.root = link_root
        assert client.get("/thumbnails/flickr_index/a.jpg").status_code == 200
        r = client.get("/thumbnails/flickr_index/b.jpg")
        assert r.status_code == 404 and b"secret" not in r.content
    finally:
        searcher._files, searcher._allowed, searcher.root = searcher_files


def test_errors_never_leak_a_traceback(
    client: Any, served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(samples: list[Any]) -> list[Any]:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(client.app.state.batchers["predict:mosi_tiny"], "run_batch", broken)
    row = _mosi_rows(1)[0]
    with caplog.at_level("ERROR", logger="polymodal.serve"):
        r = client.post("/predict", json={"inputs": {"text": row["text"]}})
    assert r.status_code == 500
    assert r.json() == {
        "error": "internal server error; the server's log has the details",
        "field": None,
    }
    assert "secret" not in r.text
    assert "secret internal detail" in caplog.text  # the server's log has it


def test_a_full_queue_is_a_503_with_retry_after(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polymodal.serve.batcher import QueueFull

    async def full(item: Any) -> Any:
        raise QueueFull("full")

    monkeypatch.setattr(client.app.state.batchers["predict:mosi_tiny"], "submit", full)
    row = _mosi_rows(1)[0]
    r = client.post("/predict", json={"inputs": {"text": row["text"]}})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "busy" in r.json()["error"]


def test_health_info_openapi_and_no_cdn_docs(client: Any) -> None:
    assert client.get("/health").json() == {
        "status": "ok",
        "models": ["mosi_tiny"],
        "indexes": ["flickr_index"],
        "sentiment": False,
        "caption": False,
    }
    info = client.get("/info").json()
    assert [f["name"] for f in info["models"][0]["inputs"]] == ["text", "audio"]
    assert info["models"][0]["inputs"][0]["shape"] == [100]
    assert info["indexes"][0]["queries"] == ["image", "text"]
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/search", "/sentiment", "/health", "/metrics"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404
    page = client.get("/")
    assert page.status_code == 200 and "http://" not in page.text and "https://" not in page.text


def test_sentiment_routes(served: dict[str, Any], tmp_path: Path) -> None:
    """The route's plumbing with a stand-in analyser (the real models train for minutes)."""
    from fastapi.testclient import TestClient

    from polymodal.serve.app import ServeConfig, create_app

    seen: list[tuple[str, bytes]] = []

    def fake(path: Path) -> dict[str, Any]:
        seen.append((path.suffix, path.read_bytes()))
        return {"video": path.name, "utterances": [{"start": 0.0, "end": 1.0, "score": 0.5}]}

    app = create_app(sentiment=fake, config=ServeConfig(max_upload_mb=1 / 1024))
    with TestClient(app) as c:
        r = c.post("/sentiment", files={"video": ("clip.mp4", b"\x00" * 100, "video/mp4")})
        assert r.status_code == 200 and r.json()["utterances"][0]["score"] == 0.5
        assert seen == [(".mp4", b"\x00" * 100)]
        r = c.post("/sentiment", files={"video": ("clip.mp4", b"\x00" * 2000, "video/mp4")})
        assert r.status_code == 413 and r.json()["field"] == "video"
        r = c.post("/sentiment", files={"video": ("clip.txt", b"hello", "text/plain")})
        assert r.status_code == 415 and r.json()["field"] == "video"
        r = c.post("/sentiment", json={})
        assert r.status_code == 400 and r.json()["field"] == "video"
    with TestClient(create_app()) as c:
        r = c.post("/sentiment", files={"video": ("clip.mp4", b"\x00", "video/mp4")})
        assert r.status_code == 404 and "--sentiment" in r.json()["error"]


def test_serve_refuses_bad_flags_and_warns_off_localhost(
    mosi_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from polymodal.cli.main import main

    assert main(["serve", str(mosi_run), "--max-batch", "0"]) == 2
    assert "--max-batch must be >= 1, got 0" in capsys.readouterr().err
    assert main(["serve", os.fspath(mosi_run / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    ran: list[tuple[str, int]] = []
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: ran.append((host, port)))
    assert main(["serve", str(mosi_run), "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert ran == [("0.0.0.0", 8123)]
    assert "reachable from other machines" in capsys.readouterr().err
    assert main(["serve", str(mosi_run)]) == 0
    assert ran[-1] == ("127.0.0.1", 8000)
    assert "warning" not in capsys.readouterr().err


def test_serve_sentiment_wires_the_apps_models(
    mosi_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--sentiment`` loads ``polymodal sentiment``'s models once and answers with its
    timeline JSON (analyse stubbed: the real models train for minutes)."""
    import argparse

    from fastapi.testclient import TestClient

    import polymodal.apps.sentiment as app
    import polymodal.featurize.pipeline as pipeline
    from polymodal.cli import serve

    loaded: list[tuple[Any, Any]] = []
    monkeypatch.setattr(app, "load_models", lambda t, v: loaded.append((t, v)) or "models")
    monkeypatch.setattr(pipeline, "Featurizer", lambda config: ("featurizer", config.fps))
    row = app.UtteranceSentiment(start=0.0, end=2.0, text="great", score=0.7, label="positive")

    def analyse(video: Path, models: Any, featurizer: Any, transcript: Any) -> list[Any]:
        assert models == "models" and featurizer == ("featurizer", 5.0) and transcript is None
        assert video.suffix == ".mp4" and video.read_bytes() == b"clip"
        return [row]

    monkeypatch.setattr(app, "analyse", analyse)
    args = argparse.Namespace(
        paths=[str(mosi_run)],
        host="127.0.0.1",
        port=8000,
        device="cpu",
        max_batch=4,
        max_wait_ms=1.0,
        queue=8,
        max_upload_mb=1.0,
        sentiment=True,
    )
    with TestClient(serve.build(args)) as c:
        r = c.post("/sentiment", files={"video": ("c.mp4", b"clip", "video/mp4")})
        assert r.status_code == 200, r.text
        assert r.json()["video"] == "clip.mp4"
        assert r.json()["utterances"][0]["label"] == "positive"
        assert c.get("/health").json()["sentiment"] is True
    assert loaded == [(None, None)]


def test_forward_threads_leave_a_core_to_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from polymodal.cli.serve import forward_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert forward_threads(None) == 3 and forward_threads(2) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert forward_threads(None) == 1
    with pytest.raises(ValueError, match=r"--threads must be >= 1, got 0"):
        forward_threads(0)
