"""Frozen-encoder outputs cached on disk by content: hits, keys, damage, cap, switch."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
import torch

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.encoders.disk_cache import (
    FILE_NAME,
    FeatureCache,
    cache_folder,
    cache_limit_bytes,
    compute_context,
    content_key,
    open_cache,
)
from polymodal.encoders.image import EfficientNetLite0
from polymodal.encoders.text import _SHARED_CACHES, MiniLM

TEXT = ModalitySpec("text", ModalityKind.TEXT)
TEXTS = ["two dogs play in the snow", "a child climbs a wall", "", "two dogs play in the snow"]


def _entry(seed: int, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randn(4, generator=g)


def test_entries_come_back_bit_for_bit_and_damage_is_recomputed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FeatureCache(tmp_path, 2**20)
    cache.put({"a": _entry(0), "b": _entry(1, 5)})
    got = cache.get(["b", "zz", "a"])
    assert got[1] is None and got[0] is not None and got[2] is not None
    for stored, want in ((got[0], _entry(1, 5)), (got[2], _entry(0))):
        assert all(torch.equal(s, w) for s, w in zip(stored, want, strict=True))
    with sqlite3.connect(tmp_path / FILE_NAME) as db:  # a damaged disk flips some bytes
        db.execute("UPDATE blobs SET data = zeroblob(length(data)) WHERE id = 1")
    with caplog.at_level(logging.WARNING, logger="polymodal.encoders.disk_cache"):
        assert cache.get(["a"]) == [None]
    assert "is damaged: its bytes do not match their CRC-32; computing it again" in caplog.text
    assert cache.stats()[0] == 1  # the damaged entry was deleted, b kept
    cache.put({"a": _entry(0)})  # recomputed and stored again
    assert torch.equal(cache.get(["a"])[0][1], _entry(0)[1])  # type: ignore[index]


def test_any_dtype_comes_back_exactly_and_autocast_is_part_of_the_key(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, 2**20)
    half = (torch.randn(2, 3).to(torch.bfloat16), torch.arange(4, dtype=torch.int64))
    cache.put({"h": half})
    got = cache.get(["h"])[0]
    assert got is not None and all(
        g.dtype == h.dtype and torch.equal(g, h) for g, h in zip(got, half, strict=True)
    )
    cpu = torch.device("cpu")
    plain = compute_context(cpu)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = compute_context(cpu)
    assert plain == "float32" and mixed == "autocast:torch.bfloat16"
    assert content_key("id", b"x", plain) != content_key("id", b"x", mixed)


def test_an_unreadable_database_is_set_aside_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    cache = FeatureCache(tmp_path, 2**20)
    with caplog.at_level(logging.WARNING, logger="polymodal.encoders.disk_cache"):
        assert cache.get(["a"]) == [None]
    assert "cannot be read" in caplog.text
    assert (tmp_path / (FILE_NAME + ".corrupt")).is_file()
    cache.put({"a": _entry(0)})
    assert cache.get(["a"])[0] is not None


def test_the_cap_evicts_the_least_recently_used_entries(tmp_path: Path) -> None:
    one = 3 * 4 * 4 + 4 * 4  # bytes of an _entry(): (3, 4) and (4,) float32
    cache = FeatureCache(tmp_path, 3 * one)
    cache.put({"a": _entry(0), "b": _entry(1), "c": _entry(2)})
    assert cache.get(["a"])[0] is not None  # a is now the most recently used
    cache.put({"d": _entry(3)})
    assert [e is not None for e in cache.get(["a", "b", "c", "d"])] == [True, False, True, True]
    n, total = cache.stats()
    assert (n, total) == (3, 3 * one)
    cache.put({f"k{i}": _entry(i) for i in range(10)})
    assert cache.stats()[1] <= cache.max_bytes


def test_environment_moves_caps_and_switches_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYMODAL_FEATURE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "polymodal" / "features"
    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", str(tmp_path / "elsewhere"))
    assert cache_folder() == tmp_path / "elsewhere"
    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE_MB", "1.5")
    assert cache_limit_bytes() == int(1.5 * 2**20)
    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match=r"POLYMODAL_FEATURE_CACHE_MB must be a number.*'lots'"):
        cache_limit_bytes()
    for off in ("off", "0"):
        monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", off)
        assert cache_folder() is None and open_cache() is None


# ----------------------------------------------------------------------------- minilm


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    enc = build_encoder("minilm", spec=TEXT)
    assert isinstance(enc, MiniLM)
    return enc


def _forget(enc: MiniLM) -> None:
    """A fresh in-memory cache, as in a new process."""
    _SHARED_CACHES.clear()
    enc.clear_cache()


def _count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = MiniLM._encode

    def counting(self: MiniLM, texts: list[str], device: torch.device):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return real(self, texts, device)

    monkeypatch.setattr(MiniLM, "_encode", counting)
    return calls


def _run(enc: MiniLM, texts: list[str]) -> tuple[torch.Tensor, ...]:
    out = enc(ModalityBatch(texts, torch.ones(len(texts), dtype=torch.bool)))
    return out.sequence, out.mask, out.pooled


def test_minilm_reads_its_outputs_back_from_disk(
    minilm: MiniLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", str(tmp_path))
    calls = _count_encodes(monkeypatch)
    _forget(minilm)
    first = _run(minilm, TEXTS)
    assert calls == [3]  # each distinct text once
    _forget(minilm)
    hits = minilm.disk_hits
    again = _run(minilm, TEXTS)
    assert calls == [3] and minilm.disk_hits - hits == 3  # no forward pass: all from disk
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # bit for bit

    other = build_encoder("minilm", spec=TEXT, max_length=8)  # another config, another key
    assert isinstance(other, MiniLM) and other.identity() != minilm.identity()
    _forget(other)
    _run(other, TEXTS[:1])
    assert calls == [3, 1]
    key = content_key(minilm.identity(), TEXTS[0].encode())
    assert key != content_key(other.identity(), TEXTS[0].encode())

    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", "off")  # switched off: computed again
    _forget(minilm)
    _run(minilm, TEXTS)
    assert calls == [3, 1, 3]


def test_a_second_evaluation_runs_no_frozen_encoder(
    minilm: MiniLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polymodal.data.manifest import ManifestDataset
    from polymodal.inference import build_run_model, evaluate

    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", str(tmp_path / "cache"))
    manifest = tmp_path / "m.jsonl"
    rows = [{"id": f"r{i}", "review": f"review {i} of the film", "label": i % 2} for i in range(6)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = ManifestDataset(manifest)
    config = {
        "model": {
            "encoders": {"review": {"name": "minilm", "params": {}}},
            "fusion": {"name": "early", "params": {"hidden_dim": 8}},
        }
    }
    model = build_run_model(config, ds.schema)
    calls = _count_encodes(monkeypatch)
    _SHARED_CACHES.clear()
    model.load_state_dict(model.state_dict())  # joins a fresh in-memory cache
    first = evaluate(model, ds, batch_size=4)
    assert sum(calls) == 6
    _SHARED_CACHES.clear()
    model.load_state_dict(model.state_dict())
    second = evaluate(model, ds, batch_size=4)
    assert sum(calls) == 6  # nothing encoded again
    assert first == second


def test_efficientnet_reads_its_maps_back_in_eval_mode_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", str(tmp_path))
    enc = build_encoder("efficientnet_lite0", spec=ModalitySpec("img", ModalityKind.IMAGE))
    assert isinstance(enc, EfficientNetLite0)
    calls: list[int] = []
    real = EfficientNetLite0._features

    def counting(self: EfficientNetLite0, x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(EfficientNetLite0, "_features", counting)
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = enc(ModalityBatch(x, torch.ones(x.shape[0], dtype=torch.bool)))
        return out.sequence, out.pooled

    enc.eval()
    first = run(images[:2])
    again = run(images[:2])
    assert calls == [2]  # the second pass read both maps from disk
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    mixed = run(images[1:])  # one stored, one new: only the new one is computed
    assert calls == [2, 1] and torch.equal(mixed[1][0], first[1][1])
    enc.train()  # training inputs are augmented: never cached
    run(images[:2])
    assert calls == [2, 1, 2]
