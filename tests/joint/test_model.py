"""JointEmbeddingModel: shapes, normalisation, config round trip, paired features, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polymodal.checkpoint import load_checkpoint, save_checkpoint
from polymodal.data.modality import ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.joint.checkpoint import CONFIG_FILE, load_joint_checkpoint, save_joint_checkpoint
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.joint.pairs import PairedFeatures, check_pairs, evaluate_pairs
from polymodal.models.config import EncoderConfig


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
    # to_dict keys modalities by name (the YAML form), their specs without the name ...
    plain = config.to_dict()
    assert list(plain["modalities"]) == ["image", "text", "audio"]
    assert all("name" not in m["spec"] for m in plain["modalities"].values())
    # ... and from_dict also takes the list form, each spec carrying its name.
    listed = [{**m, "spec": {**m["spec"], "name": n}} for n, m in plain["modalities"].items()]
    assert JointConfig.from_dict({**plain, "modalities": listed}) == config
    assert JointConfig((_mod("a", 3), _mod("b", 3))).anchor == "a"


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="'anchor' must be one of the modalities"):
        JointConfig((_mod("image", 3), _mod("text", 3)), anchor="imgae")
    with pytest.raises(ValueError, match="at least two"):
        JointConfig((_mod("image", 3),))
    with pytest.raises(ValueError, match="projection"):
        _mod("image", 3, projection="mpl")
    with pytest.raises(
        ValueError, match=r"Unknown config key 'dims'\. Valid keys at the top level"
    ):
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


def test_paired_features_errors() -> None:
    with pytest.raises(ValueError, match="pass other_to_anchor"):
        PairedFeatures("image", "text", torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="anchor row 2 has no paired other row"):
        PairedFeatures("image", "text", torch.randn(3, 2), torch.randn(2, 2), torch.tensor([0, 1]))
    model = JointEmbeddingModel(JointConfig((_mod("image", 6), _mod("text", 5)), dim=8))
    bad = PairedFeatures("image", "text", torch.randn(3, 6), torch.randn(3, 12))
    with pytest.raises(ValueError, match="features of 'image' have 6 dims"):
        evaluate_pairs(model, [bad])
    audio = PairedFeatures("image", "audio", torch.randn(3, 12), torch.randn(3, 12))
    with pytest.raises(ValueError, match="uses modality 'audio', which the model lacks"):
        check_pairs(model, [audio], "train")
    with pytest.raises(TypeError, match="non-empty list of PairedFeatures"):
        check_pairs(model, [], "train")


def _pretrained_config() -> JointConfig:
    """A frozen pretrained image encoder (efficientnet_lite0 freezes by default)."""
    image = JointModalityConfig(
        ModalitySpec("image", "image", shape=(3, 32, 32)),
        EncoderConfig("efficientnet_lite0"),
        projection="linear",
    )
    return JointConfig((image, _mod("text", 5, "linear")), dim=8)


def test_checkpoint_skips_frozen_encoders(tmp_path: Path) -> None:
    model = JointEmbeddingModel(_pretrained_config())
    assert model.frozen_encoders() == ["image"]
    path = save_joint_checkpoint(tmp_path / "c", model, {"epoch": 1})
    saved = load_checkpoint(path).weights
    assert not any(k.startswith("encoders.image.") for k in saved)  # rebuilt on load
    assert any(k.startswith("encoders.text.") for k in saved)  # trainable: kept
    assert sum(f.stat().st_size for f in path.iterdir()) < 200_000  # kB, not EfficientNet's MB
    loaded, state = load_joint_checkpoint(path)
    assert list(state["frozen_encoders"]) == ["image"] and state["epoch"] == 1
    assert loaded.fingerprint() == model.fingerprint()
    # Trained over other frozen weights than the ones the config rebuilds: refused.
    weight = next(model.encoders["image"].parameters())
    with torch.no_grad():
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    other = save_joint_checkpoint(tmp_path / "other", model)
    with pytest.raises(ValueError, match="frozen 'image' encoder's weights"):
        load_joint_checkpoint(other)


def test_checkpoint_of_an_encoder_frozen_after_build(tmp_path: Path) -> None:
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
    with pytest.raises(FileNotFoundError, match="is neither a checkpoint folder"):
        load_joint_checkpoint(tmp_path / "nothing")
    # A checkpoint of another kind of model (no joint_config.json) is refused by name.
    plain = save_checkpoint(tmp_path / "plain", {"w": torch.zeros(2)}, {"epoch": 1})
    with pytest.raises(FileNotFoundError, match=f"has no {CONFIG_FILE}"):
        load_joint_checkpoint(plain)


def test_evaluate_pairs_metrics_and_groups() -> None:
    """Several other rows per anchor: each relevant to its own anchor only."""
    model = JointEmbeddingModel(JointConfig((_mod("image", 6), _mod("text", 5)), dim=8))
    a = torch.randn(4, 12)
    pairs = PairedFeatures(
        "image", "text", a, torch.randn(7, 12), torch.tensor([0, 1, 2, 3, 0, 1, 0])
    )
    table, counts = pairs.groups()
    assert counts.tolist() == [3, 2, 1, 1]
    assert table.tolist() == [[0, 4, 6], [1, 5, -1], [2, -1, -1], [3, -1, -1]]
    metrics = evaluate_pairs(model, [pairs])
    assert pairs.name == "image-text"
    assert {"image2text_r@1", "text2image_r@10", "r1_mean"} <= set(metrics)
    mean = (metrics["image2text_r@1"] + metrics["text2image_r@1"]) / 2
    assert metrics["r1_mean"] == pytest.approx(mean)
