"""benchmarks/retrieval.py: its setups are overrides of the shipped config; its ensemble."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.joint.pairs import PairedFeatures, evaluate_pairs
from polymodal.models.config import EncoderConfig
from polymodal.training import load_config
from retrieval import (
    CONFIG,
    R_AT_K,
    SETUP_KEYS,
    SETUPS,
    ensemble_metrics,
    run_config,
    shared_names,
)


def test_residual_row_is_the_shipped_config(tmp_path: Path) -> None:
    [(_, overrides)] = [s for s in SETUPS if s[0].startswith("linear + MLP (residual)")]
    got = run_config(overrides, 2, tmp_path).to_dict()
    shipped = load_config(CONFIG, ["seed=2", f"output_dir={tmp_path}", "progress=false"])
    assert got == shipped.to_dict()


def test_the_other_rows_change_one_thing_of_the_shipped_config(tmp_path: Path) -> None:
    rows = dict(SETUPS)
    [pool] = [v for k, v in rows.items() if "attention pooling" in k]
    cfg = run_config(pool, 0, tmp_path)
    assert cfg.model["image"].pool == "attention" and cfg.model["text"].pool == "encoder"
    [hinge] = [v for k, v in rows.items() if "max-violation" in k]
    o = run_config(hinge, 0, tmp_path).optim
    assert (o.loss, o.batch_size, o.lr, o.margin, o.all_positives) == (
        "max_violation",
        128,
        2e-4,
        0.2,
        True,
    )
    [text] = [v for k, v in rows.items() if k.endswith("fine-tuned on cached token states")]
    cfg = run_config(text, 0, tmp_path)
    assert cfg.model["text"].encoder.params == {"trainable_layers": 1}
    assert cfg.model["image"].encoder.params == {} and cfg.optim.lr_scale == {"encoders": 0.05}
    [both] = [v for k, v in rows.items() if "EfficientNet head conv" in k]
    cfg = run_config(both, 0, tmp_path)
    assert cfg.model["image"].encoder.params == {"trainable_layers": 1}
    [aug] = [v for k, v in rows.items() if "caption tokens dropped" in k]
    cfg = run_config(aug, 0, tmp_path)
    assert cfg.model["text"].token_dropout == 0.1 and cfg.optim.lr_scale == {"encoders": 0.05}
    assert len(SETUP_KEYS) == len(SETUPS)


def test_linear_row_reproduces_the_linear_probe(tmp_path: Path) -> None:
    [(_, overrides)] = [s for s in SETUPS if s[0].startswith("linear projection")]
    cfg = run_config(overrides, 1, tmp_path)
    assert cfg.model.dim == 256 and cfg.seed == 1 and cfg.patience == 5
    for name in ("image", "text"):
        m = cfg.model[name]
        assert (m.projection, m.dropout, m.input_norm) == ("linear", 0.0, False)
    o = cfg.optim
    assert (o.epochs, o.batch_size, o.lr, o.weight_decay) == (30, 256, 1e-3, 0.01)
    assert (o.all_positives, o.warmup_steps, o.temperature) == (False, 50, 0.05)
    assert run_config(overrides, 1, tmp_path, fast=True).optim.epochs == 2


def test_shared_names_rename_both_directions_in_percent() -> None:
    lib = {f"image2text_r@{k}": k / 100 for k in (1, 5, 10)}
    lib |= {f"text2image_r@{k}": k / 50 for k in (1, 5, 10)}
    got = shared_names({**lib, "r1_mean": 0.5}, "image", "text")
    assert list(got) == list(R_AT_K)
    assert got["i2t_r@5"] == pytest.approx(5.0) and got["t2i_r@10"] == pytest.approx(20.0)


def _model(seed: int) -> JointEmbeddingModel:
    def mod(name: str) -> JointModalityConfig:
        spec = ModalitySpec(name, ModalityKind.TABULAR, shape=(4,))
        return JointModalityConfig(spec, EncoderConfig("mlp", {"dim": 6}), projection="linear")

    torch.manual_seed(seed)
    return JointEmbeddingModel(JointConfig((mod("image"), mod("text")), dim=5)).eval()


def _pairs(seed: int, n: int = 12, captions: int = 2) -> PairedFeatures:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 6, generator=g)
    b = torch.cat([a + 0.8 * torch.randn(n, 6, generator=g) for _ in range(captions)])
    return PairedFeatures("image", "text", a, b, torch.arange(n).repeat(captions))


@pytest.mark.parametrize("seed", [0, 1])
def test_ensemble_of_one_model_is_its_own_evaluation(seed: int) -> None:
    model, pairs = _model(seed), _pairs(seed)
    expected = shared_names(evaluate_pairs(model, [pairs]), "image", "text")
    assert ensemble_metrics([model], pairs) == pytest.approx(expected)


def test_ensemble_is_order_free_and_ignores_duplicates() -> None:
    a, b, pairs = _model(0), _model(1), _pairs(3, n=30)
    one: dict[str, Any] = ensemble_metrics([a], pairs)
    assert ensemble_metrics([a, a], pairs) == pytest.approx(one)
    assert ensemble_metrics([a, b], pairs) == pytest.approx(ensemble_metrics([b, a], pairs))
    with pytest.raises(ValueError, match="at least one model"):
        ensemble_metrics([], pairs)
