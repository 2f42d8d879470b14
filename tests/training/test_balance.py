from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor, nn

from polymodal.data import MultimodalDataset, Sample, Schema
from polymodal.data.modality import ModalitySpec, TargetSpec
from polymodal.data.sample import Batch
from polymodal.inference import data_loader, load_trained
from polymodal.models import ModelConfig
from polymodal.models.build import build_model
from polymodal.models.entropy import only_modality
from polymodal.training import (
    Callback,
    DataConfig,
    LoopState,
    SupervisedOptim,
    TrainConfig,
    Trainer,
    load_config,
    train,
)
from polymodal.training.balance import (
    alone_masks,
    gblend_weights,
    modulate_gradients,
    ogm_coefficients,
    owm_project,
    owm_update,
)
from polymodal.training.probe import probe_modalities
from polymodal.training.supervised import SupervisedStrategy

SCHEMA = Schema(
    (ModalitySpec("a", "features", shape=(4,)), ModalitySpec("b", "features", shape=(3,))),
    TargetSpec("classification", 2, ("neg", "pos")),
)
MODEL_CFG = ModelConfig.from_dict(
    {
        "encoders": {
            "a": {"name": "mlp", "params": {"dim": 8}},
            "b": {"name": "mlp", "params": {"dim": 8}},
        },
        "fusion": {"name": "early", "params": {"hidden_dim": 8}},
    }
)


class Toy(MultimodalDataset):
    """Label = sign of a[0]; ``b`` is noise unless ``b_signal`` (then b[0] adds to it)."""

    name = "toy"

    def __init__(self, n: int, seed: int, split: str = "train", b_signal: bool = True) -> None:
        g = torch.Generator().manual_seed(seed)
        self.schema, self.split = SCHEMA, split
        self.a = torch.randn(n, 4, generator=g)
        self.b = torch.randn(n, 3, generator=g)
        self.y = ((self.a[:, 0] + (0.5 * self.b[:, 0] if b_signal else 0)) > 0).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Sample:
        return Sample(f"{self.split}{i}", {"a": self.a[i], "b": self.b[i]}, int(self.y[i]))

    def targets(self) -> list[Any]:
        return self.y.tolist()

    def groups(self) -> list[str]:
        return [f"g{i % 10}" for i in range(len(self))]


def _cfg(tmp_path: Path, balance: Any = None, **optim: Any) -> TrainConfig:
    opt: dict[str, Any] = {"lr": 1e-2, "epochs": 2, **optim}
    if balance is not None:
        opt["balance"] = balance
    return TrainConfig(
        data=DataConfig(dataset="toy", batch_size=16),
        model=MODEL_CFG,
        optim=SupervisedOptim.from_dict(opt, "optim"),
        output_dir=str(tmp_path / "run"),
        device="cpu",
        progress=False,
        patience=None,
    )


def _strategy(cfg: TrainConfig) -> SupervisedStrategy:
    model = build_model(cfg.model, SCHEMA, seed=0)
    return SupervisedStrategy(cfg, model, Toy(64, 0), Toy(32, 1, "val"))


_SPLITS = ((512, 0, "train"), (128, 1, "val"), (128, 2, "test"))


def _batch(n: int = 16) -> Batch:
    ds = Toy(n, 3)
    return next(iter(data_loader(ds, n)))


def _grads(module: nn.Module) -> dict[str, Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------ OGM-GE


def test_ogm_coefficients_hand_worked() -> None:
    # two modalities: rho_a = 0.8 / 0.4 = 2, rho_b = 0.5; k_a = 1 - tanh(0.5 * (2 - 1))
    k = ogm_coefficients({"a": 0.8, "b": 0.4}, alpha=0.5)
    assert k["a"] == pytest.approx(1 - 0.46211715726, abs=1e-9) and k["b"] == 1.0
    # three: rho_a = 0.9 / mean(0.3, 0.6) = 2; rho_b = 0.3 / 0.75 = 0.4; rho_c = 0.6 / 0.6 = 1
    k = ogm_coefficients({"a": 0.9, "b": 0.3, "c": 0.6}, alpha=1.0)
    assert k == pytest.approx({"a": 1 - math.tanh(1.0), "b": 1.0, "c": 1.0})


def test_modulate_gradients_scales_by_exactly_k() -> None:
    enc = nn.Linear(3, 2)
    enc(torch.ones(4, 3)).pow(2).sum().backward()
    before = _grads(enc)
    modulate_gradients(enc.parameters(), 0.25, None)
    for k, g in _grads(enc).items():
        assert torch.equal(g, before[k] * 0.25), k
    # with noise: reproducible from the generator, and different from plain scaling
    noisy = []
    for _ in range(2):
        for p in enc.parameters():
            p.grad = before[next(k for k, q in enc.named_parameters() if q is p)].clone()
        modulate_gradients(enc.parameters(), 0.25, torch.Generator().manual_seed(1))
        noisy.append(_grads(enc))
    assert torch.equal(noisy[0]["weight"], noisy[1]["weight"])
    assert not torch.equal(noisy[0]["weight"], before["weight"] * 0.25)


def test_ogm_ge_scales_only_the_dominant_encoder(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"method": "ogm_ge", "alpha": 0.5, "noise": False})
    s = _strategy(cfg)
    s.model.train()
    loss, _ = s.loss(_batch())
    loss.backward()
    before = _grads(s.model)
    coeff = s.balancer.coefficients  # type: ignore[union-attr]
    assert coeff is not None and min(coeff.values()) < 1.0 and max(coeff.values()) == 1.0
    s.before_step()
    after = _grads(s.model)
    for name, g in after.items():
        part = name.split(".")
        k = coeff[part[1]] if part[0] == "encoders" else 1.0
        assert torch.allclose(g, before[name] * k, rtol=0, atol=0), name


# ------------------------------------------------------------------ Gradient-Blending


def test_gblend_weights_hand_worked() -> None:
    before = {"fused": (1.0, 1.2), "a": (1.0, 1.1), "b": (1.2, 1.3)}
    after = {"fused": (0.6, 1.0), "a": (0.8, 1.0), "b": (1.1, 1.25)}
    # G = val drop: 0.2, 0.1, 0.05; dO = change of (val - train): 0.2, 0.1, 0.05
    # G / dO^2 = 5, 10, 20 -> / 35
    w = gblend_weights(before, after)
    assert w == pytest.approx({"fused": 5 / 35, "a": 10 / 35, "b": 20 / 35})
    worse = {**after, "b": (1.0, 1.4)}  # b's validation loss rose: weight 0
    assert gblend_weights(before, worse) == pytest.approx({"fused": 1 / 3, "a": 2 / 3, "b": 0.0})
    assert gblend_weights(before, {k: (0.5, 2.0) for k in before}) is None


# ------------------------------------------------------------------ MLA


def test_owm_projection_is_orthogonal_to_stored_directions() -> None:
    g = torch.Generator().manual_seed(0)
    r1, r2 = torch.randn(8, generator=g), torch.randn(8, generator=g)
    grad = torch.randn(3, 8, generator=g)
    assert (grad @ r1).abs().max() > 0.1  # not orthogonal to begin with
    p = owm_update(torch.eye(8), r1, 1e-8)
    assert (owm_project(grad, p) @ r1).abs().max() < 1e-4
    p = owm_update(p, r2, 1e-8)
    new = owm_project(grad, p)
    assert (new @ r1).abs().max() < 1e-4 and (new @ r2).abs().max() < 1e-4
    assert new.norm() > 0.1  # the other 6 directions are kept


def test_mla_trains_one_encoder_per_step(tmp_path: Path) -> None:
    s = _strategy(_cfg(tmp_path, "mla"))
    s.model.train()
    for expected in ("a", "b", "a"):
        s.model.zero_grad(set_to_none=True)
        loss, _ = s.loss(_batch())
        loss.backward()
        s.before_step()
        moved = {n.split(".")[1] for n, _ in _grads(s.model).items() if n.startswith("encoders.")}
        assert moved == {expected}
    assert s.balancer.projections  # type: ignore[union-attr]


def test_mla_trains_every_modality_on_every_batch(tmp_path: Path) -> None:
    """As the authors' code: each batch is trained once per modality, in turn, so every
    encoder sees the whole epoch; a run resumed between a batch's two steps continues it."""
    s = _strategy(_cfg(tmp_path, "mla"))
    s.setup(torch.device("cpu"))
    assert s.steps_per_epoch() == 2 * 4  # 64 examples in batches of 16, two modalities
    steps = list(s.batches(0, 0))
    assert len(steps) == 8
    for i in range(0, 8, 2):
        assert steps[i] is steps[i + 1]
    assert all(steps[i] is not steps[i + 2] for i in range(0, 6, 2))
    s.model.train()
    moved = []
    for batch in steps[:4]:
        s.model.zero_grad(set_to_none=True)
        s.loss(batch)[0].backward()
        s.before_step()
        moved.append({n.split(".")[1] for n in _grads(s.model) if n.startswith("encoders.")})
    assert moved == [{"a"}, {"b"}, {"a"}, {"b"}]
    resumed = list(s.batches(0, 3))  # after step 3: batch 1's second step, then the rest
    assert len(resumed) == 5
    assert torch.equal(resumed[0].target, steps[3].target)
    assert torch.equal(resumed[1].target, steps[4].target)
    assert torch.equal(resumed[2].target, steps[5].target)


def test_mla_calibrated_fusion_fits_keeps_and_reloads_its_temperatures(tmp_path: Path) -> None:
    """``mla_fusion: calibrated``: the mean of each modality's logits over its temperature,
    fitted on validation; the best epoch's temperatures reach the test and the checkpoint."""
    from polymodal.inference import evaluate
    from polymodal.models.entropy import EntropyFusion
    from polymodal.outputs import model_logits

    cfg = _cfg(tmp_path, {"method": "mla", "mla_fusion": "calibrated"}, epochs=4)
    model = build_model(cfg.model, SCHEMA, seed=0)
    train_ds, val, test = (Toy(n, k, sp, b_signal=False) for n, k, sp in _SPLITS)
    s = SupervisedStrategy(cfg, model, train_ds, val, test)
    res = Trainer(cfg, s).fit()
    temps = res.info["modality_temperatures"]
    assert sorted(temps) == ["a", "b"] and abs(temps["a"] - 1.0) > 0.05  # fitted, not left
    assert temps["a"] < temps["b"]  # the modality with the signal is trusted more than b
    fusion = s.eval_model()
    assert isinstance(fusion, EntropyFusion)
    fusion.eval()
    batch = _batch()
    with torch.no_grad():
        z = {m: model_logits(model(only_modality(batch, m)[0])) for m in ("a", "b")}
        expected = (z["a"] / temps["a"] + z["b"] / temps["b"]) / 2
        assert torch.allclose(fusion(batch).logits, expected, atol=1e-5)
    # the checkpoint carries them: the reloaded model reproduces the run's test metrics
    trained = load_trained(res.run_dir)
    assert isinstance(trained.model, EntropyFusion) and trained.model.calibrate
    assert evaluate(trained.model, test, "classification") == pytest.approx(res.test)
    # plain MLA fits nothing and reports nothing
    plain = _cfg(tmp_path / "plain", "mla")
    ref = Trainer(plain, _strategy(plain)).fit()
    assert "modality_temperatures" not in ref.info


def test_mla_calibrated_checkpoint_without_temperatures_is_refused(tmp_path: Path) -> None:
    import json

    from polymodal.checkpoint import CheckpointError

    cfg = _cfg(tmp_path, {"method": "mla", "mla_fusion": "calibrated"}, epochs=1)
    res = Trainer(cfg, _strategy(cfg)).fit()
    state_file = res.run_dir / "checkpoints" / "best" / "state.json"
    state = json.loads(state_file.read_text())
    assert sorted(state["modality_temperatures"]) == ["a", "b"]
    del state["modality_temperatures"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"mla_fusion=calibrated keeps its temperatures"):
        load_trained(res.run_dir)


# ------------------------------------------------------------------ unimodal


def test_alone_masks_hand_worked() -> None:
    t, f = True, False
    present = {"a": torch.tensor([t, t, f, t]), "b": torch.tensor([t, f, t, f])}
    alone = alone_masks(present, "a")
    # rows with a: b hidden; row 2 (no a) keeps b, so no row is left empty
    assert alone["a"].tolist() == [t, t, f, t] and alone["b"].tolist() == [f, f, t, f]
    alone = alone_masks(present, "b")
    assert alone["b"].tolist() == [t, f, t, f] and alone["a"].tolist() == [f, t, f, t]


def _partial_batch() -> Batch:
    """``_batch()`` with ``b`` missing from rows 0-5 (so b's loss averages 10 rows)."""
    batch = _batch()
    keep = torch.arange(batch.batch_size) >= 6
    mods = {**batch.modalities, "b": batch["b"].with_present(keep)}
    return Batch(mods, batch.target, batch.ids)


def test_unimodal_loss_hand_worked(tmp_path: Path) -> None:
    # fused loss + w * (loss of a alone over the rows with a + loss of b alone over the
    # rows with b), each "alone" being the model on the batch with the other modality absent
    s = _strategy(_cfg(tmp_path, {"method": "unimodal", "unimodal_weight": 0.5}))
    s.model.train()  # no modality dropout and no dropout: deterministic
    batch = _partial_batch()
    y = batch.target
    assert y is not None
    ce = nn.functional.cross_entropy
    fused = ce(s.model(batch).logits, y)
    a_alone, _ = only_modality(batch, "a")
    b_alone, keep_b = only_modality(batch, "b")
    loss_a = ce(s.model(a_alone).logits, y)
    loss_b = ce(s.model(b_alone).logits[keep_b], y[keep_b])  # the 10 rows with b
    loss, n = s.loss(batch)
    assert n == 16
    expected = float((fused + 0.5 * (loss_a + loss_b)).detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    # the method's own log: each modality's mean unimodal loss over the epoch
    row = s.balancer.end_epoch(1, lambda: [])  # type: ignore[union-attr]
    assert row == pytest.approx(
        {"unimodal_loss_a": float(loss_a), "unimodal_loss_b": float(loss_b)}
    )


@pytest.mark.parametrize("fusion", ["early", "late", "attention", "gmu", "mult", "tensor"])
def test_fuse_with_alone_masks_equals_the_model_on_one_modality(fusion: str) -> None:
    # what the unimodal loss computes without encoding again is what the model predicts on
    # a batch that lacks the other modality, for every kind of fusion
    cfg = MODEL_CFG.replace(**{"fusion": {"name": fusion}})
    model = build_model(cfg, SCHEMA, seed=0).eval()
    from polymodal.training.balance_base import EncoderTap

    batch = _partial_batch()
    with torch.no_grad():
        with EncoderTap(model.encoders) as tap:
            model(batch)
        for m in ("a", "b"):
            via_fuse = model.fuse(tap.outputs, alone_masks(tap.present, m)).logits
            alone, keep = only_modality(batch, m)
            direct = model(alone).logits
            assert torch.allclose(via_fuse[keep], direct[keep], atol=1e-5), (fusion, m)
            assert not torch.allclose(via_fuse[keep], model(batch).logits[keep], atol=1e-5)


def test_unimodal_loss_reaches_every_encoder_alone(tmp_path: Path) -> None:
    s = _strategy(_cfg(tmp_path, "unimodal"))
    s.model.train()
    balancer = s.balancer
    assert balancer is not None
    from polymodal.training.balance_base import EncoderTap

    batch = _partial_batch()
    assert batch.target is not None
    for m in ("a", "b"):  # each modality's term moves its own encoder only
        s.model.zero_grad(set_to_none=True)
        with EncoderTap(s.model.encoders) as tap:
            s.model(batch)
        losses = balancer.unimodal_losses(tap, batch.target)  # type: ignore[attr-defined]
        losses[balancer.names.index(m)].backward()
        grads = _grads(s.model)
        own = [g for k, g in grads.items() if k.startswith(f"encoders.{m}.")]
        other = [g for k, g in grads.items() if k.startswith("encoders.") and f".{m}." not in k]
        assert own and all(g.abs().sum() > 0 for g in own), m
        assert all(g.abs().sum() == 0 for g in other), m


def test_unimodal_needs_a_model_with_fuse(tmp_path: Path) -> None:
    from polymodal.training.balance import build_balancer

    class NoFuse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoders = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.Linear(1, 1)})

    with pytest.raises(TypeError, match=r"'unimodal' needs a model with a fuse"):
        build_balancer(_cfg(tmp_path, "unimodal").optim.balance, NoFuse(), "classification")


# ------------------------------------------------------------------ config and "none"


def test_bad_balance_config_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"optim\.balance\.method.*'ogm_ge'"):
        _cfg(tmp_path, "ogm")
    with pytest.raises(ValueError, match=r"optim\.balance\.alpha"):
        _cfg(tmp_path, {"method": "ogm_ge", "alpha": -1})
    reg = Schema(SCHEMA.modalities, TargetSpec("regression", 1))
    model = build_model(MODEL_CFG, reg)
    with pytest.raises(ValueError, match=r"optim\.balance\.method='mla' needs a classification"):
        from polymodal.training.balance import build_balancer

        build_balancer(_cfg(tmp_path, "mla").optim.balance, model, "regression")


#: Sum of the weights after ``_weights_after_fit(..., None)`` with the loop as it was before
#: ``optim.balance`` existed (commit 73567ae; computed there, identical to the last digit).
GOLDEN_NONE = 14.16951907821931


def _weights_after_fit(tmp_path: Path, balance: Any) -> dict[str, Tensor]:
    cfg = _cfg(tmp_path, balance)
    s = _strategy(cfg)
    Trainer(cfg, s).fit()
    return {k: v.clone() for k, v in s.model.state_dict().items()}


#: The same sum since early stopping breaks ties of the monitor by validation loss: here
#: both epochs predict one class (equal accuracy) and the second has the lower loss.
GOLDEN_NONE_TIES = 14.30938033903658


def _unfused_adamw(groups: Any, lr: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def test_balance_none_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The golden values predate the fused AdamW kernel, which rounds differently (~1e-9):
    # the loop's logic is pinned here with torch's default kernel.
    import polymodal.training.loop as loop

    monkeypatch.setattr(loop, "adamw", _unfused_adamw)
    default = _weights_after_fit(tmp_path / "a", None)
    explicit = _weights_after_fit(tmp_path / "b", "none")
    assert all(torch.equal(default[k], v) for k, v in explicit.items())
    total = sum(float(v.double().sum()) for v in default.values())
    # rel 1e-6: the goldens were computed on an Intel Xeon; an AMD EPYC's float32 kernels
    # round differently (6e-9 relative here), while a change of the loop's logic moves the
    # sum far more (the tie-break alone: 1 %, GOLDEN_NONE against GOLDEN_NONE_TIES)
    assert total == pytest.approx(GOLDEN_NONE_TIES, rel=1e-6)
    # golden value from the loop before balance existed (commit 73567ae), once ties no
    # longer win
    import polymodal.training.selection as selection

    monkeypatch.setattr(selection, "TIE_LOSS_MARGIN", 1e9)
    first = _weights_after_fit(tmp_path / "c", None)
    total = sum(float(v.double().sum()) for v in first.values())
    assert total == pytest.approx(GOLDEN_NONE, rel=1e-6)


class _Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Trainer, state: LoopState, loss: float) -> None:
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.parametrize(
    "method",
    ["ogm_ge", "gblend", "mla", {"method": "mla", "mla_fusion": "calibrated"}, "unimodal"],
)
def test_balanced_run_resumes_to_the_same_weights(tmp_path: Path, method: Any) -> None:
    cfg = _cfg(tmp_path / "a", method).replace(checkpoint_every_steps=3)
    whole = _strategy(cfg)
    ref = Trainer(cfg, whole).fit()
    cfg_b = cfg.replace(output_dir=str(tmp_path / "b" / "run"))
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg_b, _strategy(cfg_b), [_Crash(5)]).fit()
    resumed = _strategy(cfg_b)
    res = Trainer(cfg_b, resumed).fit(resume=True)
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert res.test == ref.test and res.best_val == ref.best_val
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in res.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in ref.history
    ]


# ------------------------------------------------------------------ end to end on real data


def _har_config(tmp_path: Path, method: str) -> Path:
    enc = {"name": "ts_cnn", "params": {"dim": 8, "channels": 8, "num_layers": 1}}
    cfg = {
        "name": f"har_{method}",
        "data": {
            "dataset": "har_phone_watch",
            "options": {"rate": 10.0, "window": 2.0, "hop": 2.0, "modalities": ["phone", "watch"]},
            "batch_size": 128,
        },
        "model": {"encoders": {"phone": enc, "watch": enc}, "fusion": {"name": "early"}},
        "optim": {"lr": 3e-3, "epochs": 2, "balance": {"method": method}},
        "device": "cpu",
        "progress": False,
        "output_dir": str(tmp_path / method),
    }
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("method", ["ogm_ge", "gblend", "mla", "unimodal"])
def test_each_method_trains_end_to_end(
    tmp_path: Path, data_root: Path, method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(_har_config(tmp_path, method))
    assert cfg.optim.balance.method == method  # type: ignore[attr-defined]
    result = train(cfg)
    assert result.epochs_run == 2 and result.test is not None
    assert 0.0 <= result.test["accuracy"] <= 1.0 and math.isfinite(result.test["loss"])
    logged = {
        "ogm_ge": "ogm_k_phone",
        "gblend": "gblend_w_fused",
        "mla": None,
        "unimodal": "unimodal_loss_watch",
    }[method]
    if logged is not None:
        assert all(logged in row for row in result.history)
    if method == "gblend":  # re-estimated after epoch 2, still a distribution
        w = [v for k, v in result.history[-1].items() if k.startswith("gblend_w_")]
        assert len(w) == 3 and sum(w) == pytest.approx(1.0)
    trained = load_trained(result.run_dir)  # the checkpoint holds exactly the model's weights
    if method == "mla":  # reloaded as selected: unimodal predictions fused by entropy
        from polymodal.cli.train import run_split
        from polymodal.inference import evaluate
        from polymodal.models.entropy import EntropyFusion

        assert isinstance(trained.model, EntropyFusion)
        test = evaluate(trained.model, run_split(trained, "test"), "classification")
        assert test["accuracy"] == pytest.approx(result.test["accuracy"])
    else:
        assert hasattr(trained.model, "fusion")  # the joint model, as trained
    if method == "gblend":  # the CLI's probe, next to the fused accuracy
        from polymodal.cli.main import main

        capsys.readouterr()
        assert main(["evaluate", str(result.run_dir), "--probe", "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        assert "probe:phone" in out and "probe:watch" in out and "fused" in out


# ------------------------------------------------------------------ probe


def test_probe_finds_the_informative_modality() -> None:
    wide = {"name": "mlp", "params": {"dim": 32}}
    cfg = ModelConfig.from_dict({"encoders": {"a": wide, "b": wide}})
    model = build_model(cfg, SCHEMA, seed=0)  # untrained encoders: a random projection
    splits = [
        Toy(n, s, sp, b_signal=False) for n, s, sp in ((300, 0, "t"), (150, 1, "v"), (300, 2, "e"))
    ]
    acc = probe_modalities(model, *splits)
    assert set(acc) == {"a", "b"}
    assert acc["a"] > 0.85
    assert abs(acc["b"] - 0.5) < 0.1
