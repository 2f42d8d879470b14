"""``data.split_seed``: one validation carve for runs of several seeds."""

from __future__ import annotations

import pytest

from polymodal.models import EncoderConfig, FusionConfig, ModelConfig
from polymodal.models.context import ContextConfig
from polymodal.training.config import ContextTrainConfig, DataConfig
from polymodal.training.context import build_context
from polymodal.training.data import build_datasets, dataset_for_split

pytestmark = pytest.mark.usefixtures("data_root")


def _data(**kw: object) -> DataConfig:
    return DataConfig(dataset="mosi", options={"modalities": ["audio"]}, **kw)  # type: ignore[arg-type]


def _val_videos(data: DataConfig, seed: int) -> set[str]:
    _, val, _ = build_datasets(data, seed)
    return set(val.groups())


def test_split_seed_fixes_the_carve_whatever_the_run_seed() -> None:
    plain = _data()
    # without it, the run's seed carves: seeds 0 and 1 hold out other videos
    assert _val_videos(plain, 0) != _val_videos(plain, 1)
    fixed = _data(split_seed=1)
    assert _val_videos(fixed, 0) == _val_videos(fixed, 5) == _val_videos(plain, 1)
    # evaluate reads the same split back, example for example
    _, val, _ = build_datasets(fixed, 7)
    assert dataset_for_split(fixed, 7, "val").ids() == val.ids()
    assert fixed.carve_seed(7) == 1 and plain.carve_seed(7) == 7


def test_context_runs_carve_videos_with_the_split_seed() -> None:
    """``task: context`` carves whole videos with the same seed as the utterance split."""
    fixed = _data(split_seed=2)
    cfg = ContextTrainConfig(
        data=fixed,
        model=ModelConfig({"audio": EncoderConfig("mlp", {"dim": 8})}, FusionConfig("early")),
        context=ContextConfig(hidden_dim=4),
        seed=9,
        device="cpu",
    )
    val = build_context(cfg).splits["val"]
    assert val is not None
    assert {val.base.groups()[i] for i in val.utterance_indices()} == _val_videos(fixed, 9)
    assert _val_videos(fixed, 9) != _val_videos(_data(), 9)


def test_split_seed_needs_a_carve() -> None:
    with pytest.raises(ValueError, match=r"data.split_seed seeds the carve.*Remove one"):
        DataConfig(dataset="flickr8k", val_split="val", split_seed=0)
