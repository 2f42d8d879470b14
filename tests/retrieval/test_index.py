"""Exact and FAISS indexes: search results, agreement, recall, save/load, errors."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from polymodal.retrieval import ExactIndex, FaissIndex, Index, load_index
from tests.conftest import require


def data(n: int = 200, d: int = 16, seed: int = 0) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def names(n: int) -> list[str]:
    return [f"item{i}" for i in range(n)]


def brute_force(vectors: Tensor, queries: Tensor, k: int) -> Tensor:
    v = torch.nn.functional.normalize(vectors, dim=1)
    q = torch.nn.functional.normalize(queries, dim=1)
    return (q @ v.T).topk(k, dim=1).indices


@pytest.fixture
def faiss() -> Any:
    module = require("faiss")
    module.omp_set_num_threads(1)
    return module


# --------------------------------------------------------------------------- exact


def test_exact_search_returns_best_first_with_ids_and_metadata() -> None:
    vectors = data(50)
    index = ExactIndex(16)
    index.add(vectors, names(50), [{"n": i} for i in range(50)], modality="image")
    result = index.search(vectors[[3, 7]] * 5.0, k=4)  # scaled: cosine ignores the norm
    assert result.scores.shape == result.indices.shape == (2, 4)
    assert result.indices[:, 0].tolist() == [3, 7]
    assert torch.allclose(result.scores[:, 0], torch.ones(2), atol=1e-5)
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()  # sorted
    assert result.ids[0][0] == "item3" and result.metadata[1][0] == {"n": 7}
    assert result.indices.tolist() == brute_force(vectors, vectors[[3, 7]], 4).tolist()


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 1000])
def test_exact_chunking_does_not_change_results(chunk_size: int) -> None:
    vectors, queries = data(50), data(6, seed=1)
    index = ExactIndex(16, chunk_size=chunk_size)
    index.add(vectors[:20], names(50)[:20], modality="image")  # two adds
    index.add(vectors[20:], names(50)[20:], modality="image")
    result = index.search(queries, k=5)
    assert result.indices.tolist() == brute_force(vectors, queries, 5).tolist()


def test_exact_inner_product_keeps_norms() -> None:
    vectors, queries = data(30), data(3, seed=1)
    index = ExactIndex(16, metric="ip")
    index.add(vectors, names(30), modality="image")
    result = index.search(queries, k=3)
    expected = (queries @ vectors.T).topk(3, dim=1)
    assert torch.allclose(result.scores, expected.values, atol=1e-5)
    assert result.indices.tolist() == expected.indices.tolist()


def test_k_larger_than_index_returns_every_item() -> None:
    index = ExactIndex(16)
    index.add(data(5), names(5), modality="image")
    result = index.search(data(2, seed=1), k=10)
    assert result.indices.shape == (2, 5)
    assert sorted(result.indices[0].tolist()) == list(range(5))
    assert len(result.ids[1]) == 5


def test_cross_modal_query_declared_modality() -> None:
    index = ExactIndex(16, modalities=["text", "image"])
    index.add(data(10), names(10), modality="image")
    assert index.search(data(1, seed=1), k=2, modality="text").indices.shape == (1, 2)
    with pytest.raises(
        ValueError,
        match=r"modality='audio' is not a modality this index was built for: \['image', 'text'\]",
    ):
        index.search(data(1, seed=1), k=2, modality="audio")


def test_exact_round_trip(tmp_path: Path) -> None:
    vectors, queries = data(40), data(4, seed=1)
    index = ExactIndex(16, modalities=["image", "text"], model="clip-tiny@abc123", chunk_size=9)
    index.add(vectors, names(40), [{"caption": f"c{i}"} for i in range(40)], modality="image")
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert manifest["kind"] == "exact" and manifest["dim"] == 16 and manifest["count"] == 40
    assert manifest["modality"] == "image" and manifest["model"] == "clip-tiny@abc123"
    assert manifest["format_version"] == 1

    loaded = load_index(tmp_path / "idx", expect_model="clip-tiny@abc123")
    assert isinstance(loaded, ExactIndex) and loaded.chunk_size == 9
    assert (loaded.modality, loaded.modalities, len(loaded)) == ("image", ["image", "text"], 40)
    before, after = index.search(queries, 5), loaded.search(queries, 5)
    assert torch.equal(before.scores, after.scores) and before.ids == after.ids
    assert before.metadata == after.metadata
    loaded.add(data(2, seed=3), ["new0", "new1"], modality="image")  # still usable
    assert len(loaded) == 42


# --------------------------------------------------------------------------- faiss


def test_exact_and_faiss_flat_agree(faiss: Any) -> None:
    vectors, queries = data(300), data(20, seed=1)
    exact, flat = ExactIndex(16), FaissIndex(16, "flat")
    for index in (exact, flat):
        index.add(vectors, names(300), modality="image")
    a, b = exact.search(queries, 10), flat.search(queries, 10)
    assert a.ids == b.ids
    assert torch.allclose(a.scores, b.scores, atol=1e-5)


def test_building_a_faiss_index_reports_progress_off_a_terminal(
    faiss: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("polymodal.progress.LOG_EVERY", 0.0)  # a line per chunk
    monkeypatch.setattr("polymodal.retrieval.faiss_index.ADD_CHUNK", 40)
    caplog.set_level(logging.INFO, logger="polymodal")
    index = FaissIndex(16, "ivf", nlist=4, nprobe=4)
    index.add(data(100), names(100), modality="image")
    chunked = index.search(data(5, seed=1), 3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "training the IVF index: 4 cells on 100 vectors ..."
    assert lines[1].startswith("trained the IVF index in ")
    assert lines[2].startswith("building index (faiss ivf, 100 vectors): 1/3 chunks (33%)")
    assert lines[-1].startswith("building index (faiss ivf, 100 vectors): 3/3 chunks (100%)")
    monkeypatch.setattr("polymodal.retrieval.faiss_index.ADD_CHUNK", 10_000)
    whole = FaissIndex(16, "ivf", nlist=4, nprobe=4)
    whole.add(data(100), names(100), modality="image")
    assert whole.search(data(5, seed=1), 3).ids == chunked.ids  # chunks change nothing


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("ivf", {"nlist": 16, "nprobe": 12}),
        ("hnsw", {"M": 16, "efSearch": 64}),
        ("ivfpq", {"nlist": 16, "nprobe": 12, "pq_m": 8, "rerank": 8}),
    ],
)
def test_approximate_recall_at_10(faiss: Any, kind: str, params: dict[str, Any]) -> None:
    vectors, queries = data(2000, seed=2), data(50, seed=3)
    index = FaissIndex(16, kind, **params)
    index.add(vectors, names(2000), modality="image")
    found = index.search(queries, 10).indices
    truth = brute_force(vectors, queries, 10)
    recall = np.mean(
        [len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]
    )
    assert recall > 0.9


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("flat", {}),
        ("ivf", {"nlist": 8, "nprobe": 8}),
        ("hnsw", {"M": 8, "efSearch": 32, "efConstruction": 20}),
        ("ivfpq", {"nlist": 4, "nprobe": 4, "pq_m": 4, "rerank": 4}),
    ],
)
def test_faiss_round_trip(faiss: Any, tmp_path: Path, kind: str, params: dict[str, Any]) -> None:
    vectors, queries = data(300), data(5, seed=1)  # IVF-PQ trains 256 codes: >= 256 vectors
    index = FaissIndex(16, kind, model="m1", **params)
    index.add(vectors, names(300), [{"i": i} for i in range(300)], modality="audio")
    before = index.search(queries, 5)
    index.save(tmp_path)
    assert (tmp_path / "faiss.index").is_file()
    loaded = load_index(tmp_path)
    assert isinstance(loaded, FaissIndex)
    assert (loaded.faiss_kind, loaded.modality, loaded.model) == (kind, "audio", "m1")
    after = loaded.search(queries, 5)
    assert before.ids == after.ids and torch.allclose(before.scores, after.scores)
    assert before.metadata == after.metadata
    loaded.add(data(3, seed=4), ["x", "y", "z"], modality="audio")  # added to the trained index
    assert loaded.search(data(3, seed=4), 1).ids == [["x"], ["y"], ["z"]]


def test_ivfpq_checks_its_parameters(faiss: Any) -> None:
    assert FaissIndex(384, "ivfpq").pq_m == 192  # dim // 2
    assert FaissIndex(18, "ivfpq").pq_m == 9  # the largest divisor of 18 up to 18 // 2
    assert FaissIndex(14, "ivfpq").pq_m == 7
    with pytest.raises(ValueError, match=r"'pq_m' must divide dim=16 .* got 5"):
        FaissIndex(16, "ivfpq", pq_m=5)
    index = FaissIndex(16, "ivfpq", nlist=4)
    index.add(data(100), names(100), modality="image")
    with pytest.raises(ValueError, match=r"needs at least 256, but holds only 100"):
        index.search(data(1), 3)


def test_ivf_needs_enough_vectors_to_train(faiss: Any) -> None:
    index = FaissIndex(16, "ivf", nlist=64)
    index.add(data(20), names(20), modality="image")
    with pytest.raises(ValueError, match=r"nlist=64 .* holds only 20\. .*lower nlist"):
        index.search(data(1), 3)


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ImportError, match=r'pip install "polymodal\[retrieval\]"'):
        FaissIndex(16)


# --------------------------------------------------------------------------- errors


def make_index(n: int = 10) -> Index:
    index = ExactIndex(256, modalities=["image", "text"], model="m1")
    index.add(data(n, d=256), names(n), modality="image")
    return index


def test_query_errors() -> None:
    index = make_index()
    with pytest.raises(ValueError, match=r"query has 128 dims, but the index holds 256-d vectors"):
        index.search(data(2, d=128), k=3)
    with pytest.raises(ValueError, match=r"'queries' must have shape \(N, D\), got \(256,\)"):
        index.search(data(1, d=256)[0], k=3)
    with pytest.raises(ValueError, match=r"'k' must be an int >= 1, got 0"):
        index.search(data(1, d=256), k=0)
    with pytest.raises(ValueError, match=r"the index is empty"):
        ExactIndex(4).search(data(1, d=4), k=1)


def test_add_errors() -> None:
    index = make_index()
    with pytest.raises(ValueError, match=r"vectors have 8 dims, but the index holds 256-d"):
        index.add(data(2, d=8), ["a", "b"], modality="image")
    with pytest.raises(ValueError, match=r"this index holds 'image' items, got modality='text'"):
        index.add(data(2, d=256), ["a", "b"], modality="text")
    with pytest.raises(ValueError, match=r"modality='audio' is not a modality"):
        index.add(data(2, d=256), ["a", "b"], modality="audio")
    with pytest.raises(ValueError, match=r"ids must be unique, but \['item3'\] is repeated"):
        index.add(data(2, d=256), ["a", "item3"], modality="image")
    with pytest.raises(ValueError, match=r"'ids' must be a list of 2 strings"):
        index.add(data(2, d=256), ["a"], modality="image")
    with pytest.raises(ValueError, match=r"metadata\[1\] is not JSON-serialisable"):
        index.add(data(2, d=256), ["a", "b"], [{}, {"t": torch.zeros(1)}], modality="image")
    with pytest.raises(ValueError, match=r"vectors\[0\] is all zeros"):
        index.add(torch.zeros(1, 256), ["z"], modality="image")
    assert len(index) == 10  # failed adds leave the index unchanged
    with pytest.raises(ValueError, match=r"'metric' must be one of \['cosine', 'ip'\], got 'l2'"):
        ExactIndex(4, metric="l2")
    with pytest.raises(ValueError, match=r"empty; add vectors before saving"):
        ExactIndex(4).save("unused")


def test_faiss_kind_error(faiss: Any) -> None:
    with pytest.raises(
        ValueError, match=r"'kind' must be one of \['flat', 'ivf', 'hnsw', 'ivfpq'\], got 'pq'"
    ):
        FaissIndex(4, "pq")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"index\.json not found \(folder does not exist\)"):
        load_index(tmp_path / "nowhere")
    make_index().save(tmp_path)
    with pytest.raises(ValueError, match=r"built with model 'm1', but expect_model='m2'"):
        load_index(tmp_path, expect_model="m2")

    (tmp_path / "ids.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"incomplete: \['ids\.json'\] is missing"):
        load_index(tmp_path)

    manifest = json.loads((tmp_path / "index.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ValueError, match=r"format_version 99, but this version of polymodal reads format_version 1"
    ):
        load_index(tmp_path)


def test_load_detects_inconsistent_files(tmp_path: Path) -> None:
    make_index().save(tmp_path)
    np.save(tmp_path / "vectors.npy", np.zeros((3, 256), dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"vectors\.npy has shape \(3, 256\), but index\.json says 10"
    ):
        load_index(tmp_path)


def test_load_faiss_without_its_file(faiss: Any, tmp_path: Path) -> None:
    index = FaissIndex(16)
    index.add(data(5), names(5), modality="image")
    index.save(tmp_path)
    (tmp_path / "faiss.index").unlink()
    with pytest.raises(FileNotFoundError, match=r"\['faiss\.index'\] is missing"):
        load_index(tmp_path)


# --------------------------------------------------------------------------- finite, checked files


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rows_refused_at_build_naming_the_row(bad: float) -> None:
    vectors = data(5, d=256)
    vectors[3, 7] = bad
    index = make_index()
    with pytest.raises(ValueError, match=r"vectors\[3\] contains NaN or infinite values"):
        index.add(vectors, names(5), modality="image")
    queries = data(2, d=256)
    queries[1, 0] = bad
    with pytest.raises(ValueError, match=r"queries\[1\] contains NaN or infinite values"):
        index.search(queries, k=3)
    big = np.full((1, 256), 1e300)  # finite in float64, infinite in float32
    with pytest.raises(ValueError, match=r"vectors\[0\] contains NaN or infinite values"):
        index.add(big, ["big"], modality="image")
    with pytest.raises(ValueError, match=r"vectors\[0\] is too large for float32"):
        index.add(torch.full((1, 256), 3e37), ["huge"], modality="image")
    assert len(index) == 10


def _saved_index(tmp_path: Path) -> Path:
    return make_index().save(tmp_path / "idx")


def _vectors(folder: Path) -> np.ndarray:
    return np.load(folder / "vectors.npy")


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_non_finite_row_refused_at_load_naming_file_row_and_id(tmp_path: Path, bad: float) -> None:
    folder = _saved_index(tmp_path)
    vectors = _vectors(folder)
    vectors[4, 0] = bad
    np.save(folder / "vectors.npy", vectors)
    with pytest.raises(
        ValueError,
        match=r"idx/vectors\.npy row 4 \(id 'item4'\) holds NaN or infinite values; its scores "
        r"would be NaN and rank first",
    ):
        load_index(folder)


def _cut(file: Path, drop: int) -> None:
    file.write_bytes(file.read_bytes()[:-drop])


VECTOR_DAMAGE = {
    "truncated": (
        lambda f: _cut(f, 100),
        r"vectors\.npy is truncated: it has \d+ bytes, but its header describes \d+",
    ),
    "header only": (
        lambda f: f.write_bytes(f.read_bytes()[:128]),  # the header alone
        r"vectors\.npy is truncated",
    ),
    "garbage": (lambda f: f.write_bytes(b"garbage"), r"vectors\.npy is not a \.npy array file"),
    "empty": (lambda f: f.write_bytes(b""), r"vectors\.npy is not a \.npy array file"),
    "appended": (
        lambda f: f.write_bytes(f.read_bytes() + b"\0" * 8),
        r"vectors\.npy has 8 bytes after its array",
    ),
    "int64": (
        lambda f: np.save(f, np.zeros((10, 256), dtype=np.int64)),
        r"vectors\.npy holds int64 values, but an index stores float32 vectors",
    ),
    "object": (
        lambda f: np.save(f, np.array([[{"a": 1}]] * 10, dtype=object)),
        r"vectors\.npy holds object values",
    ),
    "float64": (
        lambda f: np.save(f, np.load(f).astype(np.float64)),
        r"vectors\.npy holds float64 values",
    ),
    "not unit": (
        lambda f: np.save(f, np.load(f) * 3),
        r"vectors\.npy row 0 \(id 'item0'\) has norm 3, but a cosine index stores unit vectors",
    ),
    "shape": (
        lambda f: np.save(f, np.load(f)[:, :128]),
        r"vectors\.npy has shape \(10, 128\), but index\.json says 10 256-d items",
    ),
}


@pytest.mark.parametrize("case", list(VECTOR_DAMAGE))
def test_damaged_vectors_file_named(tmp_path: Path, case: str) -> None:
    damage, match = VECTOR_DAMAGE[case]
    folder = _saved_index(tmp_path)
    damage(folder / "vectors.npy")
    with pytest.raises(ValueError, match=match) as e:
        load_index(folder)
    assert str(folder / "vectors.npy") in str(e.value) and "again" in str(e.value)


JSON_DAMAGE = {
    "ids empty": ("ids.json", "", r"ids\.json is empty"),
    "ids cut": ("ids.json", '["item0", "it', r"ids\.json is not valid JSON \(.* at line 1"),
    "ids binary": ("ids.json", b"\xff\x00", r"ids\.json is not UTF-8 text"),
    "ids not strings": (
        "ids.json",
        json.dumps([*names(9), 9]),
        r"ids\.json entry 9 is 9, not a string id",
    ),
    "ids repeated": (
        "ids.json",
        json.dumps([*names(9), "item2"]),
        r"ids\.json repeats the ids \['item2'\]",
    ),
    "ids object": ("ids.json", "{}", r"ids\.json has a dict, but index\.json says 10"),
    "metadata entry": (
        "metadata.json",
        json.dumps([{}] * 9 + ["caption"]),
        r"metadata\.json entry 9 \(id 'item9'\) is str, not an object",
    ),
    "metadata short": (
        "metadata.json",
        "[]",
        r"metadata\.json has 0 entries, but index\.json says 10",
    ),
    "manifest cut": ("index.json", '{"kind": "ex', r"index\.json is not valid JSON"),
    "manifest list": ("index.json", "[]", r"index\.json must hold a JSON object, got list"),
}


@pytest.mark.parametrize("case", list(JSON_DAMAGE))
def test_damaged_json_file_named(tmp_path: Path, case: str) -> None:
    name, text, match = JSON_DAMAGE[case]
    folder = _saved_index(tmp_path)
    if isinstance(text, bytes):
        (folder / name).write_bytes(text)
    else:
        (folder / name).write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        load_index(folder)
    assert str(folder / name) in str(e.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("dim", "256", r"has dim='256'; expected an integer >= 1"),
        ("count", -1, r"has count=-1; expected an integer >= 1"),
        ("metric", "l2", r"has metric='l2'; expected one of \['cosine', 'ip'\]"),
        ("modality", None, r"has modality=None; expected a modality name"),
        ("modalities", "image", r"has modalities='image'; expected null or a list"),
        ("model", 3, r"has model=3; expected null or a string"),
        ("params", ["x"], r"has params=\['x'\]; expected an object"),
        ("params", {"chunk_size": 0}, r"holds parameters no index can be built from \(.*chunk"),
        ("kind", "annoy", r"has kind 'annoy'; expected one of \['exact', 'faiss'\]"),
    ],
)
def test_manifest_values_checked(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    folder = _saved_index(tmp_path)
    manifest = json.loads((folder / "index.json").read_text())
    manifest[key] = value
    (folder / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"idx/index\.json " + expected) as e:
        load_index(folder)
    assert "again" in str(e.value)


def test_ip_index_keeps_its_norms_through_save_and_load(tmp_path: Path) -> None:
    index = ExactIndex(16, metric="ip")
    index.add(data(6) * 3, names(6), modality="image")
    loaded = load_index(index.save(tmp_path / "ip"))
    assert torch.equal(loaded.vectors, index.vectors)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: _cut(f, 50), r"faiss\.index is not a FAISS index file, or is truncated"),
        (lambda f: f.write_bytes(b"garbage!" * 8), r"faiss\.index is not a FAISS index file"),
        (lambda f: f.write_bytes(b""), r"faiss\.index is empty"),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_damaged_faiss_file_named(faiss: Any, tmp_path: Path, damage: Any, match: str) -> None:
    index = FaissIndex(16)
    index.add(data(5), names(5), modality="image")
    folder = index.save(tmp_path / "f")
    damage(folder / "faiss.index")
    with pytest.raises(ValueError, match=match) as e:
        load_index(folder)
    assert str(folder / "faiss.index") in str(e.value) and "Error in" not in str(e.value)
