from __future__ import annotations

import pytest
import torch

from polymodal.data import (
    ModalityKind,
    ModalitySpec,
    Sample,
    Schema,
    TargetSpec,
    collate,
    group_split,
)
from polymodal.registry import Registry

SCHEMA = Schema(
    (
        ModalitySpec("text", ModalityKind.TEXT),
        ModalitySpec("image", "image", shape=(3, 4, 4)),
        ModalitySpec("accel", "timeseries", shape=(3,), sample_rate=50.0),
        ModalitySpec("feat", "features", shape=(5,)),
    ),
    TargetSpec("classification", 2, ("neg", "pos")),
)


def _sample(i: int, missing: tuple[str, ...] = (), steps: int = 3) -> Sample:
    mods = {
        "text": f"hello {i}",
        "image": torch.full((3, 4, 4), float(i)),
        "accel": torch.arange(steps * 3, dtype=torch.float32).view(steps, 3),
        "feat": torch.full((5,), float(i)),
    }
    for m in missing:
        mods[m] = None
    return Sample(f"ex{i}", mods, target=i % 2, timestamps={"accel": torch.arange(steps) / 50.0})


def test_collate_pads_sequences_and_masks_missing() -> None:
    batch = collate([_sample(0, steps=2), _sample(1, ("image", "text"), steps=4)], SCHEMA)
    assert batch.ids == ["ex0", "ex1"]
    assert batch.target.tolist() == [0, 1]
    assert batch["text"].values == ["hello 0", ""]
    assert batch["text"].present.tolist() == [True, False]
    img = batch["image"]
    assert img.values.shape == (2, 3, 4, 4)
    assert img.present.tolist() == [True, False]
    assert img.values[1].abs().sum() == 0
    acc = batch["accel"]
    assert acc.values.shape == (2, 4, 3)
    assert acc.lengths.tolist() == [2, 4]
    assert acc.mask.tolist() == [[True, True, False, False], [True] * 4]
    assert acc.values[0, 2:].abs().sum() == 0
    assert torch.allclose(acc.timestamps[1], torch.arange(4) / 50.0)


def test_collate_all_missing_uses_spec_shape() -> None:
    batch = collate([_sample(0, ("image", "accel")), _sample(1, ("image", "accel"))], SCHEMA)
    assert batch["image"].values.shape == (2, 3, 4, 4)
    assert not batch["image"].present.any()
    assert batch["accel"].values.shape == (2, 1, 3)
    assert batch["accel"].lengths.tolist() == [0, 0]


def test_collate_rejects_nan_and_wrong_ndim() -> None:
    bad = _sample(0)
    bad.modalities["feat"] = torch.tensor([1.0, float("nan"), 0, 0, 0])
    with pytest.raises(ValueError, match=r"'ex0'.*'feat'.*NaN"):
        collate([bad], SCHEMA)
    bad = _sample(0)
    bad.modalities["image"] = torch.zeros(4, 4)
    with pytest.raises(ValueError, match=r"'image'.*expected 3 dims"):
        collate([bad], SCHEMA)


def test_batch_index_and_with_present() -> None:
    batch = collate([_sample(i) for i in range(3)], SCHEMA)
    sub = batch.index(torch.tensor([2, 0]))
    assert sub.ids == ["ex2", "ex0"]
    assert sub["feat"].values[:, 0].tolist() == [2.0, 0.0]
    dropped = batch["feat"].with_present(torch.tensor([True, False, True]))
    assert dropped.present.tolist() == [True, False, True]
    assert dropped.values[1].abs().sum() == 0
    assert dropped.values[2, 0] == 2.0


def test_schema_round_trip_and_errors() -> None:
    assert Schema.from_dict(SCHEMA.to_dict()) == SCHEMA
    with pytest.raises(ValueError, match="Did you mean 'image'"):
        ModalitySpec("x", "imagee")
    with pytest.raises(ValueError, match="duplicate"):
        Schema((ModalitySpec("a", "text"), ModalitySpec("a", "image")))
    with pytest.raises(ValueError, match="Unknown modality 'imag'"):
        SCHEMA.select(["imag"])


def test_group_split_keeps_groups_apart() -> None:
    groups = [f"spk{i % 6}" for i in range(60)]
    tr, va = group_split(groups, 0.34, seed=1)
    assert sorted(tr + va) == list(range(60))
    assert not {groups[i] for i in tr} & {groups[i] for i in va}
    assert len({groups[i] for i in va}) == 2
    assert group_split(groups, 0.34, seed=1) == (tr, va)


def test_registry_suggests_close_match() -> None:
    reg: Registry[int] = Registry("fusion")

    @reg.register("concat", "feature concatenation")
    def _concat() -> int:
        return 1

    assert reg.build("concat") == 1
    with pytest.raises(ValueError, match=r"Unknown fusion 'concatt'.*Did you mean 'concat'"):
        reg.build("concatt")
