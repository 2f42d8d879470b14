"""JointEmbeddingModel: shapes, normalisation, config round trip, binding, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polymodal.data.modality import ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.models.config import EncoderConfig
from polymodal.models.joint import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.training.contrastive import (
    ContrastiveConfig,
    PairedFeatures,
    evaluate_pairs,
    load_joint_checkpoint,
    save_joint_checkpoint,
    train_contrastive,
)


def _mod(name: str, in_dim: int, projection: str = "mlp") -> JointModalityConfig:
    return JointModalityConfig(
        ModalitySpec(name, "tabular", shape=(in_dim,)),
        EncoderConfig("mlp", {"dim": 12}),
        projection=projection,
        hidden_dim=16,
    )


def _binding_config() -> JointConfig:
    audio = JointModalityConfig(
        ModalitySpec("audio", "tabular", shape=(4,)),
        EncoderConfig("mlp", {"dim": 12}),
        hidden_dim=16,
        input_norm=True,
    )
    image = _mod("image", 6, "residual")
    return JointConfig((image, _mod("text", 5, "linear"), audio), dim=8, anchor="image")


def _batch(x: torch.Tensor) -> ModalityBatch:
    return ModalityBatch(x, torch.ones(x.shape[0], dtype=torch.bool))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_encode_shapes_and_unit_norm(batch_size: int) -> None:
    model = JointEmbeddingModel(_binding_config()).eval()
    for name, d in (("image", 6), ("text", 5), ("audio", 4)):
        z = model(name, _batch(torch.randn(batch_size, d)))
        assert z.shape == (batch_size, 8)
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(batch_size))
    out = model.encode_all({"text": _batch(torch.randn(2, 5)), "audio": _batch(torch.randn(2, 4))})
    assert list(out) == ["audio", "text"]


def test_gradients_reach_projections() -> None:
    model = JointEmbeddingModel(_binding_config())
    model.encode("text", _batch(torch.randn(3, 5))).sum().backward()
    assert all(p.grad is not None for p in model.projections["text"].parameters())


def test_config_round_trip_and_anchor_default() -> None:
    config = _binding_config()
    again = JointConfig.from_dict(config.to_dict())
    assert again == config and again.anchor == "image"
    assert JointConfig.from_json(config.to_json()).to_dict() == config.to_dict()
    assert JointConfig((_mod("a", 3), _mod("b", 3))).anchor == "a"


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="'anchor' must be one of the modalities"):
        JointConfig((_mod("image", 3), _mod("text", 3)), anchor="imgae")
    with pytest.raises(ValueError, match="at least two"):
        JointConfig((_mod("image", 3),))
    with pytest.raises(ValueError, match="projection"):
        _mod("image", 3, projection="mpl")
    with pytest.raises(ValueError, match="Unknown key 'dims'"):
        JointConfig.from_dict({**_binding_config().to_dict(), "dims": 3})


def test_wrong_modality_and_dim_errors() -> None:
    model = JointEmbeddingModel(_binding_config())
    with pytest.raises(ValueError, match="modality 'video' is not in this model"):
        model.encode("video", _batch(torch.randn(2, 4)))
    with pytest.raises(ValueError, match=r"features must have shape \(B, 12\)"):
        model.project("text", torch.randn(2, 7))


def test_fingerprint_tracks_weights() -> None:
    a = JointEmbeddingModel(_binding_config())
    b = JointEmbeddingModel(_binding_config())
    b.load_state_dict(a.state_dict())
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        next(b.projections["text"].parameters()).add_(1.0)
    assert a.fingerprint() != b.fingerprint()


def _clusters(n: int, dims: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n paired examples: both views are noisy random linear maps of one latent."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=g)
    wa, wb = torch.randn(4, dims[0], generator=g), torch.randn(4, dims[1], generator=g)
    return latent @ wa, latent @ wb


def test_contrastive_loop_reaches_perfect_retrieval(tmp_path: Path) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    model = JointEmbeddingModel(config)
    # Cached "pooled features" (the encoders' out_dim is 12).
    a, b = _clusters(16, (12, 12), seed=1)
    # Two "captions" per image: other rows i and 16 + i belong to image i.
    b2 = torch.cat([b, b + 0.01 * torch.randn_like(b)])
    mapping = torch.cat([torch.arange(16), torch.arange(16)])
    pairs = PairedFeatures("image", "text", a, b2, mapping)
    before = evaluate_pairs(model, [pairs])["r1_mean"]
    result = train_contrastive(
        model,
        [pairs],
        [pairs],
        ContrastiveConfig(epochs=60, batch_size=16, lr=1e-2, warmup_steps=2, patience=None),
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert before < 1.0
    assert result.metrics["image2text_r@1"] == 1.0 and result.metrics["text2image_r@1"] == 1.0
    assert result.checkpoint is not None and result.steps == 60  # one batch of 16 anchors per epoch
    # The checkpoint rebuilds the same model (same fingerprint, same retrieval).
    loaded, state = load_joint_checkpoint(result.checkpoint)
    assert state["metrics"]["r1_mean"] == result.metrics["r1_mean"]
    assert evaluate_pairs(loaded, [pairs])["r1_mean"] == result.metrics["r1_mean"]


def test_binding_two_pair_sets_share_the_anchor() -> None:
    model = JointEmbeddingModel(_binding_config())
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(24, 4, generator=g)
    feats = {n: latent @ torch.randn(4, 12, generator=g) for n in ("image", "text", "audio")}
    train = [
        PairedFeatures("image", "text", feats["image"], feats["text"]),
        PairedFeatures("image", "audio", feats["image"], feats["audio"]),
    ]
    result = train_contrastive(
        model,
        train,
        train,
        ContrastiveConfig(epochs=100, batch_size=24, lr=1e-2, warmup_steps=2, patience=None),
    )
    assert set(result.temperatures) == {"image-text", "image-audio"}
    assert result.metrics["image2audio_r@1"] > 0.9 and result.metrics["image2text_r@1"] > 0.9
    # Text and audio were never paired, yet they meet in the image space.
    zt = model.project("text", feats["text"])
    za = model.project("audio", feats["audio"])
    hits = ((zt @ za.T).argmax(dim=1) == torch.arange(24)).float().mean()
    assert hits > 0.5  # chance: 1/24


def test_paired_features_errors() -> None:
    with pytest.raises(ValueError, match="pass other_to_anchor"):
        PairedFeatures("image", "text", torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="anchor row 2 has no paired other row"):
        PairedFeatures("image", "text", torch.randn(3, 2), torch.randn(2, 2), torch.tensor([0, 1]))
    model = JointEmbeddingModel(JointConfig((_mod("image", 6), _mod("text", 5)), dim=8))
    bad = PairedFeatures("image", "text", torch.randn(3, 6), torch.randn(3, 12))
    with pytest.raises(ValueError, match="features of 'image' have 6 dims"):
        train_contrastive(model, [bad])


def test_checkpoint_skips_frozen_encoders(tmp_path: Path) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    torch.manual_seed(3)
    model = JointEmbeddingModel(config)
    model.encoders["image"].requires_grad_(False)  # frozen: rebuilt from the config on load
    path = save_joint_checkpoint(tmp_path / "c", model, {"epoch": 1})
    torch.manual_seed(3)  # the same init rebuilds the same frozen weights
    loaded, state = load_joint_checkpoint(path)
    assert list(state["frozen_encoders"]) == ["image"]
    assert loaded.fingerprint() == model.fingerprint()
    torch.manual_seed(4)  # other frozen weights than those trained with: refused
    with pytest.raises(ValueError, match="frozen 'image' encoder's weights"):
        load_joint_checkpoint(path)


def test_not_a_joint_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load_joint_checkpoint(tmp_path / "nothing")


def test_multi_positive_loss_reduces_to_clip_loss() -> None:
    from polymodal.losses import clip_loss
    from polymodal.training.contrastive import multi_positive_clip_loss

    a, b = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(
        multi_positive_clip_loss(a, b, torch.arange(5), 2.0), clip_loss(a, b, 2.0)
    )
    # Extra positives only add probability mass on the a -> b side: the loss cannot grow
    # for the anchors whose positive set widens.
    b2 = torch.cat([b, a + 0.01 * torch.randn(5, 4)])
    owner = torch.cat([torch.arange(5), torch.arange(5)])
    assert torch.isfinite(multi_positive_clip_loss(a, b2, owner, 2.0))


def test_all_positives_training_reaches_perfect_retrieval() -> None:
    model = JointEmbeddingModel(JointConfig((_mod("image", 6), _mod("text", 5)), dim=8))
    a, b = _clusters(16, (12, 12), seed=2)
    b3 = torch.cat([b, b + 0.01 * torch.randn_like(b), b - 0.01 * torch.randn_like(b)])
    pairs = PairedFeatures("image", "text", a, b3, torch.arange(16).repeat(3))
    config = ContrastiveConfig(
        epochs=60, batch_size=16, lr=1e-2, warmup_steps=2, patience=None, all_positives=True
    )
    result = train_contrastive(model, [pairs], [pairs], config)
    assert result.metrics["r1_mean"] == 1.0
    with pytest.raises(ValueError, match="all_positives=True needs loss='clip'"):
        ContrastiveConfig(loss="siglip", all_positives=True)
