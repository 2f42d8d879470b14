"""``/predict`` with files: a run on a manifest of photos and a number, read as training
read the manifest (multipart and base64 alike), and its refusals."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def photos(image_run: dict[str, Path]) -> Iterator[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from polymodal.inference import load_trained
    from polymodal.serve.app import ServeConfig, create_app
    from polymodal.serve.predictor import Predictor

    limit = 64 * 1024
    predictor = Predictor(load_trained(image_run["run"]), "photos", max_upload_bytes=limit)
    app = create_app([predictor], config=ServeConfig(max_upload_mb=limit / 1024 / 1024))
    with TestClient(app) as client:
        yield {"client": client, "predictor": predictor, **image_run}


def _expected(photos: dict[str, Any], row: int) -> float:
    """P(class 'b') of the model on the manifest's row, decoded by ManifestDataset."""
    from polymodal.data.collate import collate
    from polymodal.data.manifest import ManifestDataset

    predictor = photos["predictor"]
    ds = ManifestDataset(photos["manifest"], schema=predictor.schema, labels=False)
    with torch.no_grad():
        logits = predictor.model(collate([ds[row]], predictor.schema)).logits
    return float(torch.softmax(logits[0], -1)[1])


def _row(photos: dict[str, Any], i: int) -> tuple[Path, int]:
    line = photos["manifest"].read_text().splitlines()[i + 1].split(",")
    return Path(line[1]), int(line[2])


def test_the_form_fields_come_from_the_schema(photos: dict[str, Any]) -> None:
    info = photos["client"].get("/info").json()["models"][0]
    assert info["classes"] == ["a", "b"]
    fields = {f["name"]: f for f in info["inputs"]}
    assert fields["photo"]["input"] == "file" and ".jpg" in fields["photo"]["accept"]
    assert fields["tabular"]["columns"] == ["age"]


def test_multipart_and_base64_predict_as_the_manifest_reads(photos: dict[str, Any]) -> None:
    client = photos["client"]
    photo, age = _row(photos, 3)
    data = photo.read_bytes()
    r = client.post(
        "/predict", files={"photo": ("p.jpg", data, "image/jpeg")}, data={"age": str(age)}
    )
    assert r.status_code == 200, r.text
    expected = _expected(photos, 3)
    assert r.json()["probabilities"]["b"] == pytest.approx(expected, abs=1e-5)
    b64 = {"filename": "p.jpg", "base64": base64.b64encode(data).decode()}
    for inputs in ({"photo": b64, "age": age}, {"photo": b64, "tabular": {"age": age}}):
        r2 = client.post("/predict", json={"inputs": inputs})
        assert r2.status_code == 200, r2.text
        assert r2.json()["probabilities"]["b"] == pytest.approx(expected, abs=1e-5)
    other = client.post("/predict", json={"inputs": {"photo": b64, "age": age + 40}})
    assert other.json()["probabilities"] != r.json()["probabilities"]  # age is read
    only_age = client.post("/predict", json={"inputs": {"age": age}})
    assert only_age.status_code == 200  # the photo is missing: allowed


@pytest.mark.parametrize(
    ("inputs", "status", "field", "match"),
    [
        ({"photo": "/etc/passwd"}, 400, "inputs.photo", "is a file: upload it"),
        ({"photo": {"filename": "a.wav", "base64": "AAAA"}}, 415, "inputs.photo", "a.wav"),
        ({"photo": "data:image/png;base64,!!"}, 400, "inputs.photo", "does not decode"),
        ({"age": "abc"}, 400, "inputs.age", "finite number"),
        ({"tabular": {"agee": 3}}, 400, "inputs.age", "columns \\['age'\\] are missing"),
    ],
)
def test_bad_file_inputs_name_the_field(
    photos: dict[str, Any], inputs: dict[str, Any], status: int, field: str, match: str
) -> None:
    r = photos["client"].post("/predict", json={"inputs": inputs})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert __import__("re").search(match, r.json()["error"]), r.json()["error"]


def test_uploads_too_large_or_of_the_wrong_type(photos: dict[str, Any]) -> None:
    client = photos["client"]
    big = b"\xff\xd8" + b"0" * (64 * 1024)
    r = client.post("/predict", files={"photo": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.json()["field"] == "photo"
    r = client.post("/predict", files={"photo": ("clip.mp4", b"\x00" * 10, "video/mp4")})
    assert r.status_code == 415 and r.json()["field"] == "photo"
    assert ".jpg" in r.json()["error"]
    r = client.post("/predict", files={"age": ("age.jpg", b"\xff\xd8", "image/jpeg")})
    assert r.status_code == 400 and r.json()["field"] == "age"
    assert r.json()["error"] == "age: this field takes no file; files go in ['photo']."
