"""Cached pooled features: hit, miss, invalidation by ids and by weights, atomic folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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


def test_corrupt_entry_is_recomputed(tmp_path: Path) -> None:
    enc, fn = _encoder(), Counting(torch.randn(4, 5))
    first = _cached(enc, fn, ["a", "b", "c", "d"], tmp_path)
    (first.path / "ids.json").write_text("[")
    again = _cached(enc, fn, ["a", "b", "c", "d"], tmp_path)
    assert not again.hit and fn.built == 8


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
