"""Cached pooled features: hit, miss, invalidation by ids and by weights, atomic folders."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.joint.features import (
    cached_features,
    default_root,
    embed_pooled,
    feature_key,
    tensor_batch,
)


class Counting:
    """make_batch over fixed rows that counts the examples it builds."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows
        self.built = 0

    def __call__(self, positions: Sequence[int]) -> ModalityBatch:
        self.built += len(positions)
        return tensor_batch([self.rows[i] for i in positions])


def _encoder(frozen: bool = True) -> torch.nn.Module:
    enc = build_encoder("mlp", spec=ModalitySpec("x", ModalityKind.TABULAR, shape=(5,)), dim=4)
    return enc.requires_grad_(not frozen)


def _cached(enc: torch.nn.Module, fn: Counting, ids: list[str], root: Path, **kw: object):  # type: ignore[no-untyped-def]
    return cached_features(
        enc,
        fn,
        ids,
        dataset="toy",
        split="train",
        modality="x",
        encoder_name="mlp",
        encoder_params={"dim": 4},
        root=root,
        batch_size=3,
        **kw,  # type: ignore[arg-type]
    )


def test_miss_then_hit(tmp_path: Path) -> None:
    enc, fn = _encoder(), Counting(torch.randn(7, 5))
    ids = [f"e{i}" for i in range(7)]
    first = _cached(enc, fn, ids, tmp_path)
    assert not first.hit and fn.built == 7 and first.features.shape == (7, 4)
    second = _cached(enc, fn, ids, tmp_path)
    assert second.hit and fn.built == 7  # nothing recomputed
    torch.testing.assert_close(first.features, second.features)
    # The cached rows are the encoder's pooled outputs in eval mode.
    torch.testing.assert_close(first.features, embed_pooled(enc, fn, 7))
    assert first.path.parent == tmp_path and first.key.startswith("toy-train-x-mlp-")
    assert sorted(p.name for p in first.path.iterdir()) == ["features.npy", "ids.json", "info.json"]
    assert [p.name for p in tmp_path.iterdir()] == [first.key]  # no temporary left behind


def test_ids_change_invalidates(tmp_path: Path) -> None:
    enc, fn = _encoder(), Counting(torch.randn(7, 5))
    ids = [f"e{i}" for i in range(7)]
    first = _cached(enc, fn, ids, tmp_path)
    other = _cached(enc, fn, [*ids[:6], "e99"], tmp_path)
    reordered = _cached(enc, fn, ids[::-1], tmp_path)
    assert not other.hit and not reordered.hit and fn.built == 21
    assert len({first.key, other.key, reordered.key}) == 3


def test_weights_or_params_change_invalidates(tmp_path: Path) -> None:
    enc, fn = _encoder(), Counting(torch.randn(4, 5))
    ids = ["a", "b", "c", "d"]
    first = _cached(enc, fn, ids, tmp_path)
    # Seeded noise on the first Linear: a LayerNorm follows it, which would cancel a
    # constant shift of its weights (the features would not change at all).
    weight = next(enc.parameters())
    noise = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        weight.add_(0.5 * noise)
    after = _cached(enc, fn, ids, tmp_path)
    assert not after.hit and after.key != first.key
    assert not torch.allclose(first.features, after.features)
    assert (first.features - after.features).abs().max() > 1e-3  # a change, not rounding
    key = feature_key("toy", "train", "x", "mlp", {"dim": 8}, "w", ids)
    assert key != feature_key("toy", "train", "x", "mlp", {"dim": 4}, "w", ids)


def _nan_row(entry: Path) -> None:
    features = np.load(entry / "features.npy")
    features[2, 1] = np.nan
    np.save(entry / "features.npy", features)


DAMAGE = {
    "ids not JSON": (
        lambda e: (e / "ids.json").write_text("["),
        r"ids\.json is not a JSON list of ids",
    ),
    "ids of another list": (
        lambda e: (e / "ids.json").write_text('["a", "b"]'),
        r"ids\.json does not hold the 4 ids of its key \(got 2\)",
    ),
    "ids missing": (
        lambda e: (e / "ids.json").unlink(),
        r"entry .* is incomplete: ids\.json is missing",
    ),
    "features cut short": (
        lambda e: (e / "features.npy").write_bytes((e / "features.npy").read_bytes()[:-7]),
        r"features\.npy is not a readable \.npy array",
    ),
    "features NaN": (_nan_row, r"features\.npy row 2 \(id 'c'\) holds NaN or inf values"),
    "features integers": (
        lambda e: np.save(e / "features.npy", np.ones((4, 4), np.int64)),
        r"features\.npy holds a int64 array of shape \(4, 4\), not \(4, D\) floats",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_entry_is_named_and_recomputed(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    damage, match = DAMAGE[case]
    enc, fn = _encoder(), Counting(torch.randn(4, 5))
    first = _cached(enc, fn, ["a", "b", "c", "d"], tmp_path)
    damage(first.path)
    with caplog.at_level(logging.WARNING, logger="polymodal.joint.features"):
        again = _cached(enc, fn, ["a", "b", "c", "d"], tmp_path)
    assert not again.hit and fn.built == 8
    torch.testing.assert_close(again.features, first.features)
    [record] = caplog.records
    assert str(first.path) in record.getMessage() and re.search(match, record.getMessage())
    assert "computing the features again" in record.getMessage()
    assert _cached(enc, fn, ["a", "b", "c", "d"], tmp_path).hit  # the entry was replaced


def test_errors(tmp_path: Path) -> None:
    fn = Counting(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"has \d+ trainable parameters"):
        _cached(_encoder(frozen=False), fn, ["a", "b", "c"], tmp_path)
    assert _cached(_encoder(frozen=False), fn, ["a", "b", "c"], tmp_path, allow_trainable=True)
    with pytest.raises(ValueError, match="'ids' must be unique"):
        _cached(_encoder(), fn, ["a", "a", "c"], tmp_path)
    with pytest.raises(ValueError, match="non-empty list of strings"):
        _cached(_encoder(), fn, [], tmp_path)


def test_default_root_follows_the_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_root() == tmp_path / "polymodal" / "features"
    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", str(tmp_path / "big_disk"))
    assert default_root() == tmp_path / "big_disk"  # one variable moves both feature caches


def test_computing_features_reports_progress_off_a_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("polymodal.progress.LOG_EVERY", 0.0)  # a line per batch
    caplog.set_level(logging.INFO, logger="polymodal.progress")
    ids, enc, fn = [f"e{i}" for i in range(7)], _encoder(), Counting(torch.randn(7, 5))
    _cached(enc, fn, ids, tmp_path)  # 3 batches of <= 3
    lines = [r.getMessage() for r in caplog.records if r.name == "polymodal.progress"]
    assert lines[0].startswith("encoding x of toy train (frozen mlp): 1/3 batches (33%)")
    assert lines[-1].startswith("encoding x of toy train (frozen mlp): 3/3 batches (100%)")
    caplog.clear()
    assert _cached(enc, fn, ids, tmp_path).hit  # a hit: nothing to report
    assert not [r for r in caplog.records if r.name == "polymodal.progress"]


def test_split_features_pause_the_per_input_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polymodal.encoders import disk_cache

    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", str(tmp_path / "per_input"))
    seen: list[object] = []
    enc = _encoder()
    enc.register_forward_hook(lambda *_: seen.append(disk_cache.open_cache()))
    _cached(enc, Counting(torch.randn(4, 5)), ["a", "b", "c", "d"], tmp_path / "split")
    assert seen == [None, None]  # the split-level entry holds them; no second copy per input
    assert disk_cache.open_cache() is not None  # and only while computing it
