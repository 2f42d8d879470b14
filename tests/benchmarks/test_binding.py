"""benchmarks/binding.py: what stays in the benchmark (its pairings and its measurement).

The audio feature it uses is the library's ``audio_logmel`` (tests/encoders/test_audio_logmel.py)
and the MNIST caption pairs are the ``mnist`` data set (tests/data/test_mnist.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import binding as bench
from polymodal.data.datasets import load_dataset
from polymodal.data.datasets.av_digits import AVDigits
from polymodal.data.datasets.mnist import MNISTCaptions
from polymodal.joint.train import JointTrainConfig
from polymodal.models.build import build_model
from polymodal.retrieval.zeroshot import DIGIT_NAMES
from polymodal.training import TrainConfig


@pytest.fixture(scope="module")
def base(data_root: Path) -> JointTrainConfig:
    return bench.base_config()


def test_base_config_is_the_shipped_one_with_av_digits_images_excluded(
    base: JointTrainConfig,
) -> None:
    assert sorted(base.pairs) == ["av_digits", "flickr8k", "mnist"]
    audio = base.model["audio"]
    assert audio.encoder.name == "audio_logmel" and audio.input_norm == "batch"
    av = base.pairs["av_digits"]
    av_train = load_dataset("av_digits", split="train", **av.options)
    assert isinstance(av_train, AVDigits)
    paired = {r for _, r in av_train.mnist_pairs()}
    assert set(base.pairs["mnist"].options["exclude"]) == paired
    mnist = load_dataset("mnist", split="train", **base.pairs["mnist"].options)
    assert isinstance(mnist, MNISTCaptions)
    assert len(mnist) == 2000 and not set(mnist.rows()) & paired
    assert bench.base_config(fast=True).optim.epochs == bench.FAST_EPOCHS


@pytest.mark.parametrize("pairing", list(bench.PAIRINGS))
def test_each_pairing_trains_only_its_pair_sets(base: JointTrainConfig, pairing: str) -> None:
    uses = bench.PAIRINGS[pairing]
    cfg = bench.pairing_config(base, uses, seed=2, output_dir="/tmp/x")
    assert list(cfg.pairs) == list(uses)
    assert cfg.seed == 2 and cfg.output_dir == "/tmp/x" and cfg.model == base.model
    if "flickr8k" in uses:  # early stopping on Flickr8k's val R@1
        assert (cfg.optim.epochs, cfg.patience) == (base.optim.epochs, base.patience)
    else:  # nothing validated: fixed epochs, the last state kept
        assert (cfg.optim.epochs, cfg.patience) == (bench.NO_VAL_EPOCHS, None)
    for name in uses:
        assert cfg.pairs[name] == base.pairs[name]
    # only Flickr8k is validated: the av_digits test speakers select nothing
    validated = [n for n, p in cfg.pairs.items() if p.val_split is not None]
    assert validated == (["flickr8k"] if "flickr8k" in uses else [])


def test_supervised_reference_is_an_mlp_on_the_audio_features(data_root: Path) -> None:
    cfg = bench.supervised_config(seed=1, output_dir="/tmp/y")
    assert isinstance(cfg, TrainConfig) and cfg.seed == 1
    assert list(cfg.model.encoders) == ["audio"] and cfg.data.options == {"modalities": ["audio"]}
    assert cfg.optim.epochs == bench.SUPERVISED_EPOCHS and cfg.patience is None
    ds = load_dataset("av_digits", split="test", **cfg.data.options)
    model = build_model(cfg.model, ds.schema, seed=0)
    assert list(model.encoders["audio"].parameters()) == []  # the cached-able features
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # 1,360 features + the presence flag -> 512 -> 10 digits
    assert [(m.in_features, m.out_features) for m in linears] == [(1361, 512), (512, 10)]
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert max(drops) == 0.3
    assert bench.supervised_config(0, "/tmp/y", fast=True).optim.epochs == bench.FAST_EPOCHS


def _digit_of(text: str) -> int:
    words = text.rstrip(".").split()
    (digit,) = [d for d, name in enumerate(DIGIT_NAMES) if name in words]
    return digit


def _embed(texts: list[str]) -> torch.Tensor:
    """A perfect text side: each prompt lands on its digit's axis."""
    return F.one_hot(torch.tensor([_digit_of(t) for t in texts]), 10).float()


def test_audio_metrics_of_a_perfect_space_are_one() -> None:
    digits = torch.arange(10).repeat(5)  # (50,)
    z = F.one_hot(digits, 10).float()
    m = bench.audio_metrics(z, z, digits, _embed)
    assert set(m) == {
        "zs_audio_accuracy",
        "chance",
        "t2a_r@1",
        "t2a_r@5",
        "t2a_r@10",
        "t2a_map",
        "a2i_r@1",
        "zs_image_accuracy",
    }
    assert m["chance"] == pytest.approx(0.1)
    for k, v in m.items():
        if k != "chance":
            assert v == pytest.approx(1.0), k


def test_audio_metrics_see_audio_bound_to_the_wrong_digits() -> None:
    digits = torch.arange(10).repeat(5)
    za = F.one_hot((digits + 1) % 10, 10).float()  # every recording lands on the next digit
    zi = F.one_hot(digits, 10).float()
    m = bench.audio_metrics(za, zi, digits, _embed)
    assert m["zs_audio_accuracy"] == 0.0 and m["t2a_r@1"] == 0.0 and m["a2i_r@1"] == 0.0
    assert m["zs_image_accuracy"] == pytest.approx(1.0)  # the image side is still right
