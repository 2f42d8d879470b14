"""The context task (``task: context``): its loss, and training a ContextModel on the one
loop (ContextStrategy + ContextTrainConfig), on the tiny synthetic videos of
``tests/models/test_context.py`` and on real MOSI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polymodal.data.context import IGNORE_INDEX, VideoDataset
from polymodal.data.sample import Batch
from polymodal.inference import evaluate_videos, load_trained, predict_videos
from polymodal.losses import sequence_loss
from polymodal.models import EncoderConfig, FusionConfig, ModelConfig
from polymodal.models.context import ContextConfig
from polymodal.training import train
from polymodal.training.config import ContextTrainConfig, DataConfig, OptimConfig
from polymodal.training.context import ContextStrategy
from polymodal.training.loop import Trainer
from tests.models.test_context import ToyVideos, context_model, utterance_config

# --------------------------------------------------------------------------- loss


def test_loss_ignores_padding() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 2, generator=g, requires_grad=True)
    target = torch.tensor([[1, 0, IGNORE_INDEX], [0, IGNORE_INDEX, IGNORE_INDEX]])
    loss = sequence_loss(logits, target)
    real = torch.tensor([[True, True, False], [True, False, False]])
    expected = torch.nn.functional.cross_entropy(logits[real], target[real])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None and logits.grad[~real].abs().sum() == 0
    shifted = logits.detach().clone()
    shifted[~real] += 100.0
    torch.testing.assert_close(sequence_loss(shifted, target), expected.detach())


def test_loss_checks_shapes() -> None:
    with pytest.raises(ValueError, match=r"logits \(2, 3, 2\) and target \(2, 4\) must agree"):
        sequence_loss(torch.zeros(2, 3, 2), torch.zeros(2, 4, dtype=torch.long))


# --------------------------------------------------------------------------- training


def toy_config(tmp_path: Path, **changes: object) -> ContextTrainConfig:
    """A context run on the toy videos; ``data`` only describes them (they are in memory)."""
    cfg = ContextTrainConfig(
        data=DataConfig(dataset="toy_videos", batch_size=2),  # 2 videos per step
        model=utterance_config(),  # the utterance model context_model() builds
        context=ContextConfig(hidden_dim=8, num_heads=2),  # context_model("gru")'s settings
        optim=OptimConfig(epochs=3),
        patience=2,
        seed=0,
        device="cpu",
        progress=False,
        output_dir=str(tmp_path / "run"),
    )
    return cfg.replace(**changes) if changes else cfg


def test_fit_and_evaluate(tmp_path: Path) -> None:
    ds = VideoDataset(ToyVideos())
    train_videos, val = ds.split_videos(0.34, seed=0)
    model = context_model("gru")
    cfg = toy_config(tmp_path)
    res = Trainer(cfg, ContextStrategy(cfg, model, train_videos, val, val)).fit()
    assert 1 <= res.best_epoch <= res.epochs_run <= 3
    assert len(res.history) == res.epochs_run
    assert res.test is not None and 0.0 <= res.test["accuracy"] <= 1.0
    assert res.best_val == pytest.approx(evaluate_videos(model, val))  # best weights loaded
    assert res.test == pytest.approx(res.best_val)
    assert res.run_dir == tmp_path / "run"
    summary = json.loads((res.run_dir / "results.json").read_text())
    assert summary["task"] == "context" and summary["best_epoch"] == res.best_epoch

    # the run folder rebuilds the same model from its own config and schema
    trained = load_trained(res.run_dir)
    assert trained.task == "context"
    ours, theirs = predict_videos(model, val), predict_videos(trained.model, val)
    assert theirs.ids == ours.ids and len(ours.ids) == val.num_utterances
    torch.testing.assert_close(theirs.outputs, ours.outputs)

    with pytest.raises(ValueError, match="both train and validation"):
        ContextStrategy(cfg, model, train_videos, train_videos, None)
    with pytest.raises(ValueError, match=r"monitor='auroc' is not computed per utterance"):
        cfg.replace(monitor="auroc")


def test_evaluate_videos_without_a_modality() -> None:
    """``transform=drop_modalities`` evaluates a context model with a modality absent: the
    outputs then no longer depend on that modality's values, and differ from the full ones."""
    from polymodal.robustness import drop_modalities

    def drop_b(batch: Batch) -> Batch:
        return drop_modalities(batch, ["b"])

    model = context_model("gru").eval()
    data = ToyVideos()
    videos = VideoDataset(data)
    full = predict_videos(model, videos)
    without = predict_videos(model, videos, transform=drop_b)
    assert without.ids == full.ids
    assert not torch.allclose(without.outputs, full.outputs)
    data.b = data.b * 10.0 + 3.0  # other values of the dropped modality: the same outputs
    torch.testing.assert_close(
        predict_videos(model, videos, transform=drop_b).outputs, without.outputs
    )
    assert not torch.allclose(predict_videos(model, videos).outputs, full.outputs)
    metrics = evaluate_videos(model, videos, transform=drop_b)
    expected = torch.nn.functional.cross_entropy(without.outputs, without.targets)
    assert metrics["loss"] == pytest.approx(float(expected))


def test_training_changes_the_weights_and_lowers_the_loss(tmp_path: Path) -> None:
    """The loop really optimises the context model (not only evaluates it)."""
    ds = VideoDataset(ToyVideos())
    train_videos, val = ds.split_videos(0.34, seed=0)
    model = context_model("gru")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_before = evaluate_videos(model, train_videos)["loss"]
    cfg = toy_config(tmp_path, **{"optim.epochs": 6, "optim.lr": 1e-2, "patience": None})
    Trainer(cfg, ContextStrategy(cfg, model, train_videos, val)).fit()
    state = model.state_dict()
    for key in (
        "classifier.1.weight",
        "rnn.weight_ih_l0",
        "utterance_model.encoders.a.mlp.net.0.weight",
    ):
        assert not torch.equal(state[key], before[key]), f"{key} was not trained"
    assert evaluate_videos(model, train_videos)["loss"] < loss_before


def test_train_context_run_on_real_mosi(tmp_path: Path) -> None:
    """``train(ContextTrainConfig)`` end to end: the registered task loads MOSI as videos."""
    cfg = ContextTrainConfig(
        data=DataConfig(
            dataset="mosi",
            options={"modalities": ["audio"]},
            batch_size=8,
            val_fraction=0.2,
        ),
        model=ModelConfig(
            {"audio": EncoderConfig("mlp", {"dim": 8, "num_layers": 1})},
            FusionConfig("early", {"hidden_dim": 8}),
        ),
        context=ContextConfig(hidden_dim=4),
        optim=OptimConfig(epochs=1, max_steps=3),
        device="cpu",
        progress=False,
        output_dir=str(tmp_path / "mosi"),
    )
    res = train(cfg)
    assert res.epochs_run == 1 and res.history[0]["step"] == 3
    assert res.best_val is not None and set(res.best_val) >= {"accuracy", "macro_f1", "loss"}
    assert res.test is not None and 0.0 <= res.test["accuracy"] <= 1.0
    saved = ContextTrainConfig.from_yaml(res.run_dir / "config.yaml")
    assert saved == cfg
