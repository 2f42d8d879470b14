"""``pool: attention`` in a joint space: starts as mean pooling, trains, checks its inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polymodal.data.modality import ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.joint.checkpoint import load_joint_checkpoint
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.joint.pairs import PairedFeatures, PairSetConfig, check_pairs, evaluate_pairs
from polymodal.joint.train import ContrastiveOptim, ContrastiveStrategy, JointTrainConfig
from polymodal.models.config import EncoderConfig
from polymodal.training.loop import Trainer

CNN = EncoderConfig("image_cnn", {"dim": 8, "channels": [4, 8], "grid": 2})  # 4 steps of 8


def _image(pool: str = "attention", heads: int = 2) -> JointModalityConfig:
    return JointModalityConfig(
        ModalitySpec("image", "image", shape=(3, 28, 28)),
        CNN,
        projection="residual",
        hidden_dim=16,
        input_norm=True,
        pool=pool,  # type: ignore[arg-type]
        pool_heads=heads,
    )


def _text() -> JointModalityConfig:
    return JointModalityConfig(
        ModalitySpec("text", "tabular", shape=(5,)), EncoderConfig("mlp", {"dim": 12})
    )


def _config(pool: str = "attention", heads: int = 2) -> JointConfig:
    return JointConfig((_image(pool, heads), _text()), dim=6)


def test_a_new_attention_pool_embeds_as_mean_pooling() -> None:
    torch.manual_seed(0)
    pooled = JointEmbeddingModel(_config()).eval()
    plain = JointEmbeddingModel(_config("encoder")).eval()
    plain.encoders.load_state_dict(pooled.encoders.state_dict())
    # the same head behind the pool (Sequential index i + 1) as without it (index i)
    shifted = {}
    for key, value in pooled.projections["image"].state_dict().items():
        index, rest = key.split(".", 1)
        if index != "0":  # 0 is the pool
            shifted[f"{int(index) - 1}.{rest}"] = value
    plain.projections["image"].load_state_dict(shifted)
    images = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    batch = ModalityBatch(images, torch.ones(3, dtype=torch.bool))
    with torch.no_grad():
        z = pooled.encode("image", batch)
        torch.testing.assert_close(z, plain.encode("image", batch))
        seq = pooled.encoders["image"](batch).sequence  # (3, 4, 8)
        torch.testing.assert_close(pooled.project("image", seq), z)
    assert seq.shape == (3, 4, 8) and z.shape == (3, 6)


def test_inputs_of_the_wrong_shape_are_named() -> None:
    model = JointEmbeddingModel(_config())
    with pytest.raises(
        ValueError, match=r"must have shape \(B, L, 8\) \(the image encoder's sequence"
    ):
        model.project("image", torch.randn(2, 8))
    pairs = PairedFeatures("image", "text", torch.randn(4, 8), torch.randn(4, 12))
    with pytest.raises(ValueError, match=r"projection reads \(N, L, E\) sequences"):
        check_pairs(model, [pairs], "training")
    with pytest.raises(ValueError, match=r"modalities\.text\.pool='attention' needs an image"):
        JointModalityConfig(ModalitySpec("text", "text"), EncoderConfig("minilm"), pool="attention")
    with pytest.raises(ValueError, match=r"modalities\.image\.pool_heads must divide .* 8, got 3"):
        JointEmbeddingModel(_config(heads=3))


def test_attention_pool_trains_to_pick_the_informative_step(tmp_path: Path) -> None:
    # The image "maps": 4 steps, one of which (step 2) carries the example's identity and
    # looks different (channel 7 marks it, as an object differs from background); the
    # other three are loud noise, which mean pooling mixes in.
    g = torch.Generator().manual_seed(0)
    n = 32
    latent = torch.randn(n, 4, generator=g)
    maps = 3.0 * torch.randn(n, 4, 8, generator=g)
    maps[:, 2] = latent @ torch.randn(4, 8, generator=g)
    maps[:, :, 7] = -3.0
    maps[:, 2, 7] = 3.0
    text = latent @ torch.randn(4, 12, generator=g)
    pairs = {"image-text": PairedFeatures("image", "text", maps, text)}
    model = JointEmbeddingModel(_config())
    cfg = JointTrainConfig(
        model=model.config,
        pairs={"image-text": PairSetConfig(dataset="in-memory", other="text")},
        optim=ContrastiveOptim(lr=3e-2, warmup_steps=2, epochs=200, batch_size=32),
        patience=None,
        device="cpu",
        progress=False,
        output_dir=str(tmp_path / "run"),
    )
    result = Trainer(cfg, ContrastiveStrategy(cfg, model, train=pairs, val=pairs)).fit()
    assert result.best_val is not None and result.best_val["r1_mean"] == 1.0
    pool = model.projections["image"][0]
    with torch.no_grad():
        weights = pool.score(pool.norm(maps)).softmax(dim=1).mean(dim=(0, 2))  # (4,) per step
    assert int(weights.argmax()) == 2 and float(weights[2]) > 0.5  # it learned where to look
    loaded, _ = load_joint_checkpoint(result.checkpoint)
    assert loaded.pools_sequence("image")
    assert evaluate_pairs(loaded, list(pairs.values()))["r1_mean"] == result.best_val["r1_mean"]
