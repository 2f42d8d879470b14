"""Per-modality temperatures of a late fusion fitted on validation
(``model.fusion.params.calibrate``; :mod:`polymodal.training.calibration`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from polymodal.inference import evaluate, load_trained
from polymodal.models import ModelConfig
from polymodal.models.build import build_model
from polymodal.models.decision import LateFusion
from polymodal.models.entropy import EntropyFusion
from polymodal.outputs import EncoderOutput
from polymodal.training import DataConfig, SupervisedOptim, TrainConfig, Trainer
from polymodal.training.calibration import (
    calibrated_fusion,
    fit_inverse_temperatures,
    fit_temperatures,
    fitted_temperatures,
)
from polymodal.training.supervised import SupervisedStrategy
from tests.training.test_balance import SCHEMA, Toy


def _pooled(b: int, dims: dict[str, int], seed: int = 0) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, d in dims.items():
        x = torch.randn(b, d, generator=g)
        out[name] = EncoderOutput(x[:, None], torch.ones(b, 1, dtype=torch.bool), x)
    return out


@pytest.mark.parametrize("combine", ["mean", "mean_probs", "learned"])
def test_temperatures_act_in_eval_mode_only(combine: str) -> None:
    dims = {"a": 4, "b": 3}
    torch.manual_seed(0)
    fused = LateFusion(dims, 3, combine=combine, calibrate=True)
    plain = LateFusion(dims, 3, combine=combine)
    plain.load_state_dict(fused.state_dict(), strict=False)
    inputs = _pooled(5, dims)
    present = {"a": torch.tensor([1, 1, 0, 1, 1]).bool(), "b": torch.tensor([1, 0, 1, 1, 1]).bool()}
    fused.log_inv_temperature.copy_(torch.tensor([math.log(2.0), -math.log(4.0)]))
    for module in (fused, plain):
        module.train()  # no dropout in the heads: train mode is deterministic
    assert torch.equal(fused(inputs, present).logits, plain(inputs, present).logits)
    fused.eval()
    plain.eval()
    raw = plain(inputs, present).modality_logits
    scaled = {"a": raw["a"] * 2.0, "b": raw["b"] / 4.0}
    out = fused(inputs, present)
    torch.testing.assert_close(out.modality_logits["a"], scaled["a"])
    torch.testing.assert_close(out.modality_logits["b"], scaled["b"])
    stacked = torch.stack([scaled["a"], scaled["b"]], dim=1)  # (B, M, K)
    flags = torch.stack([present["a"], present["b"]], dim=1).float()
    expected, _ = plain.combine_logits(stacked, flags)
    torch.testing.assert_close(out.logits, expected)
    if combine == "mean":  # by hand: the mean over the modalities present
        torch.testing.assert_close(out.logits[1], scaled["a"][1])
        torch.testing.assert_close(out.logits[0], (scaled["a"][0] + scaled["b"][0]) / 2)


def test_fit_recovers_a_known_temperature() -> None:
    # Labels drawn from softmax(z): logits 3 z are over-confident by a temperature of 3.
    g = torch.Generator().manual_seed(0)
    z = 1.5 * torch.randn(4000, 1, 5, generator=g)
    y = torch.multinomial(torch.softmax(z[:, 0], -1), 1, generator=g)[:, 0]
    fusion = LateFusion({"a": 2}, 5, calibrate=True)
    log_inv, before, after = fit_inverse_temperatures(fusion, 3 * z, torch.ones(4000, 1), y)
    assert abs(math.exp(-float(log_inv[0])) - 3.0) < 0.2
    assert after < before
    assert after == pytest.approx(float(F.cross_entropy(z[:, 0], y)), abs=0.01)


def _fusion(kind: str, k: int) -> LateFusion | EntropyFusion:
    if kind == "late":
        return LateFusion({"a": 2, "b": 2}, k, calibrate=True)
    return EntropyFusion(nn.Linear(2, k), ["a", "b"], combine="calibrated")  # MLA's


@pytest.mark.parametrize("kind", ["late", "mla"])
def test_fit_softens_a_confidently_wrong_modality(kind: str) -> None:
    # "a" is right, mildly confident; "b" is right half the time, very confident.
    g = torch.Generator().manual_seed(1)
    n, k = 600, 4
    y = torch.randint(0, k, (n,), generator=g)
    a = 1.5 * F.one_hot(y, k) + 0.5 * torch.randn(n, k, generator=g)
    wrong = (y + torch.randint(1, k, (n,), generator=g)) % k
    b_class = torch.where(torch.rand(n, generator=g) < 0.5, y, wrong)
    b = 8.0 * F.one_hot(b_class, k) + 0.5 * torch.randn(n, k, generator=g)
    logits, flags = torch.stack([a, b], dim=1).float(), torch.ones(n, 2)
    fusion = _fusion(kind, k)
    log_inv, before, after = fit_inverse_temperatures(fusion, logits, flags, y)
    t_a, t_b = math.exp(-float(log_inv[0])), math.exp(-float(log_inv[1]))
    assert t_b > 4 * t_a
    assert after < 0.5 * before

    def accuracy(scale: torch.Tensor) -> float:
        fused, _ = fusion.combine_logits(logits * scale[None, :, None], flags)
        return float((fused.argmax(-1) == y).float().mean())

    assert accuracy(log_inv.exp()) > accuracy(torch.ones(2)) + 0.2


def test_mla_fusion_combines_by_entropy_or_by_calibrated_logits() -> None:
    z = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [3.0, 0.0]]])  # (B=2, M=2, K=2)
    flags = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    entropy = EntropyFusion(nn.Linear(2, 2), ["a", "b"])
    fused, w = entropy.combine_logits(z, flags)
    p = z.softmax(-1)
    h = -(p * p.log()).sum(-1)  # (B, M)
    w0 = torch.softmax(-h[0], 0)  # both present: weights exp(-H) normalised
    torch.testing.assert_close(w[0], w0)
    torch.testing.assert_close(fused[0].exp(), w0[0] * p[0, 0] + w0[1] * p[0, 1])
    torch.testing.assert_close(w[1], torch.tensor([1.0, 0.0]))  # b absent: a alone
    torch.testing.assert_close(fused[1].exp(), p[1, 0])
    calibrated = EntropyFusion(nn.Linear(2, 2), ["a", "b"], combine="calibrated")
    fused, w = calibrated.combine_logits(z, flags)
    torch.testing.assert_close(fused, torch.tensor([[1.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"must be one of \['entropy', 'calibrated'\]"):
        EntropyFusion(nn.Linear(2, 2), ["a"], combine="mean")


def _cfg(tmp_path: Path, **fusion: Any) -> TrainConfig:
    model = ModelConfig.from_dict(
        {
            "encoders": {
                "a": {"name": "mlp", "params": {"dim": 8}},
                "b": {"name": "mlp", "params": {"dim": 8}},
            },
            "fusion": {"name": "late", "params": fusion},
        }
    )
    return TrainConfig(
        data=DataConfig(dataset="toy", batch_size=16),
        model=model,
        optim=SupervisedOptim.from_dict({"lr": 1e-2, "epochs": 3}, "optim"),
        output_dir=str(tmp_path / "run"),
        device="cpu",
        progress=False,
        patience=None,
    )


def test_training_fits_and_saves_the_temperatures(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, calibrate=True)
    model = build_model(cfg.model, SCHEMA, seed=0)
    val, test = Toy(96, 1, "val", b_signal=False), Toy(96, 2, "test", b_signal=False)
    strategy = SupervisedStrategy(cfg, model, Toy(128, 0, b_signal=False), val, test)
    result = Trainer(cfg, strategy).fit()
    temps = result.info["modality_temperatures"]
    assert set(temps) == {"a", "b"}
    assert temps != {"a": 1.0, "b": 1.0}  # fitted, not left at 1
    saved = json.loads((result.run_dir / "results.json").read_text())
    assert saved["modality_temperatures"] == pytest.approx(temps)
    # the best checkpoint holds them, and a reloaded model scores the test split the same
    trained = load_trained(result.run_dir)
    assert fitted_temperatures(trained.model) == pytest.approx(temps)
    again = evaluate(trained.model, test, "classification", batch_size=16)
    assert result.test is not None
    assert again["accuracy"] == pytest.approx(result.test["accuracy"])
    assert again["loss"] == pytest.approx(result.test["loss"], rel=1e-5)
    # refitting on the same split gives the same temperatures (deterministic)
    refit = fit_temperatures(trained.model, val, batch_size=16)
    assert refit is not None
    assert refit.temperatures == pytest.approx(temps, rel=1e-4)
    assert refit.loss_after <= refit.loss_before


def test_without_calibrate_nothing_is_fitted(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    model = build_model(cfg.model, SCHEMA, seed=0)
    assert calibrated_fusion(model) is None
    assert "log_inv_temperature" not in str(list(model.state_dict()))
    assert fit_temperatures(model, Toy(32, 1, "val")) is None
    strategy = SupervisedStrategy(cfg, model, Toy(64, 0), Toy(32, 1, "val"))
    assert "modality_temperatures" not in Trainer(cfg, strategy).fit().info


def test_calibrate_errors() -> None:
    with pytest.raises(ValueError, match="'stacking' already learns"):
        LateFusion({"a": 2, "b": 2}, 3, combine="stacking", calibrate=True)
    with pytest.raises(TypeError, match="calibrate must be true or false, got 'yes'"):
        LateFusion({"a": 2}, 3, calibrate="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"target is 'regression'.*calibrate: false"):
        LateFusion.check_task("regression", {"calibrate": True})
    LateFusion.check_task("classification", {"calibrate": True})  # accepted


def test_calibrate_is_refused_with_a_balance_method_that_predicts_its_own_way(
    tmp_path: Path,
) -> None:
    cfg = _cfg(tmp_path, calibrate=True)
    mla = cfg.replace(optim=SupervisedOptim.from_dict({"balance": {"method": "mla"}}, "optim"))
    model = build_model(mla.model, SCHEMA, seed=0)
    with pytest.raises(ValueError, match=r"optim\.balance=mla predicts with its own"):
        SupervisedStrategy(mla, model, Toy(64, 0), Toy(32, 1, "val"))
    unimodal = cfg.replace(
        optim=SupervisedOptim.from_dict({"balance": {"method": "unimodal"}}, "optim")
    )
    SupervisedStrategy(unimodal, build_model(cfg.model, SCHEMA, seed=0), Toy(64, 0), Toy(32, 1))


def test_cli_train_reports_the_temperatures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polymodal.cli.main import main
    from tests.training.test_missing_recordings import _manifest

    manifest = tmp_path / "data.jsonl"
    _manifest(manifest)  # "good" carries the label, "noise" nothing; some rows lack either
    cfg = {
        "data": {
            "manifest": str(manifest),
            "train_split": None,
            "test_split": None,
            "val_fraction": 0.25,
            "batch_size": 8,
        },
        "model": {
            "encoders": {
                "good": {"name": "mlp", "params": {"dim": 8}},
                "noise": {"name": "mlp", "params": {"dim": 8}},
            },
            "fusion": {"name": "late", "params": {"calibrate": True}},
        },
        "optim": {"epochs": 8, "lr": 1e-2},
        "device": "cpu",
        "progress": False,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "temperatures" in x]
    assert line and line[0].startswith("late-fusion temperatures (fitted on validation): good ")
    temps = json.loads((tmp_path / "run" / "results.json").read_text())["modality_temperatures"]
    assert temps["noise"] > temps["good"]  # the modality that carries nothing is softened
