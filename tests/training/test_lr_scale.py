"""Per-parameter learning rates: ``optim.lr_scale`` and ``optim.layer_decay``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.encoders import build_encoder
from polymodal.training.params import param_groups
from polymodal.training.schedule import build_scheduler
from tests.training.test_loop import TinyModel, _cfg, _data, _fit, _weights


def _lrs(model: nn.Module, groups: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """parameter name -> (lr, weight_decay) of its group."""
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters() if id(p) in by_id}


def test_without_scaling_the_groups_are_the_plain_two() -> None:
    model = TinyModel()
    groups = param_groups(model, 0.1, lr=0.01)
    assert [len(g["params"]) for g in groups] == [4, 6]
    assert all("lr" not in g for g in groups)  # the optimiser's lr, as before


def test_longest_prefix_wins_and_weight_decay_groups_stay() -> None:
    model = TinyModel()  # net.0 Linear, net.1 LayerNorm, out, heads.a, heads.b
    scale = {"heads": 0.5, "heads.b": 0.25, "net.1": 2.0}  # powers of 2: exact rates
    got = _lrs(model, param_groups(model, 0.1, lr=1.0, lr_scale=scale))
    assert got == {
        "net.0.weight": (1.0, 0.1),
        "net.0.bias": (1.0, 0.0),
        "net.1.weight": (2.0, 0.0),  # a norm: scaled, never decayed
        "net.1.bias": (2.0, 0.0),
        "out.weight": (1.0, 0.1),
        "out.bias": (1.0, 0.0),
        "heads.a.weight": (0.5, 0.1),
        "heads.a.bias": (0.5, 0.0),
        "heads.b.weight": (0.25, 0.1),  # heads.b beats heads
        "heads.b.bias": (0.25, 0.0),
    }


def test_a_prefix_covers_whole_names_only() -> None:
    model = TinyModel()
    with pytest.raises(ValueError, match=r"'head' matches no trainable parameter"):
        param_groups(model, 0.1, lr=0.01, lr_scale={"head": 0.5})  # not "heads"


def test_an_unknown_prefix_names_itself_and_the_top_level_modules() -> None:
    with pytest.raises(ValueError, match=r"'encoders' matches no .*\['heads', 'net', 'out'\]"):
        param_groups(TinyModel(), 0.1, lr=0.01, lr_scale={"encoders": 0.1, "out": 2.0})


class _Stack(nn.Module):
    """An 'encoder' with ordered blocks (input side first) and a head outside them."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.ModuleDict({"emb": nn.Linear(2, 2), "l0": nn.Linear(2, 2)})
        self.enc.add_module("l1", nn.Linear(2, 2))
        self.enc.layer_blocks = lambda: [self.enc["emb"], self.enc["l0"], self.enc["l1"]]  # type: ignore[assignment]
        self.head = nn.Linear(2, 1)


def test_layer_decay_counts_blocks_from_the_top_and_multiplies_lr_scale() -> None:
    model = _Stack()
    got = _lrs(model, param_groups(model, 0.0, lr=1.0, layer_decay=0.5))
    lr = {n: v[0] for n, v in got.items() if n.endswith("weight")}
    assert lr == pytest.approx(
        {"enc.emb.weight": 0.125, "enc.l0.weight": 0.25, "enc.l1.weight": 0.5, "head.weight": 1.0}
    )
    got = _lrs(model, param_groups(model, 0.0, lr=1.0, lr_scale={"enc": 4.0}, layer_decay=0.5))
    assert got["enc.emb.bias"][0] == pytest.approx(0.5) and got["head.bias"][0] == 1.0


def test_layer_decay_needs_an_encoder_with_blocks() -> None:
    with pytest.raises(ValueError, match=r"optim.layer_decay=0.8 needs an encoder with ordered"):
        param_groups(TinyModel(), 0.1, lr=0.01, layer_decay=0.8)


def test_minilm_blocks_take_decayed_rates_and_frozen_blocks_none() -> None:
    enc = build_encoder(
        "minilm", spec=ModalitySpec("t", ModalityKind.TEXT), trainable_layers=2, cache=False
    )
    got = _lrs(enc, param_groups(enc, 0.01, lr=1.0, layer_decay=0.5))
    layers = {n.split(".")[3] for n in got}
    assert layers == {"4", "5"}  # model.encoder.layer.<i>: the frozen blocks are not trained
    assert got["model.encoder.layer.5.output.dense.weight"] == pytest.approx((0.5, 0.01))
    assert got["model.encoder.layer.4.output.LayerNorm.bias"] == pytest.approx((0.25, 0.0))


def test_the_schedule_scales_each_groups_own_base() -> None:
    model = TinyModel()
    opt = torch.optim.AdamW(param_groups(model, 0.1, lr=2.0, lr_scale={"out": 0.25}), lr=2.0)
    sched = build_scheduler(opt, total_steps=4, warmup_ratio=0.25)
    seen: list[float] = []
    for _ in range(3):
        seen += sorted({g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5, 2.0, 0.5, 2.0, 0.375, 1.5])


def test_resume_with_scaled_groups_is_exact(
    tmp_path: Path,
) -> None:
    train, val, test = _data()
    kw: dict[str, Any] = {"checkpoint_every_steps": 4}
    optim = {"lr": 1e-2, "epochs": 3, "aux_loss_weight": 0.3}
    plain_model = TinyModel()
    plain = _fit(_cfg(tmp_path / "p", optim=optim, **kw), plain_model, train, val, test)
    optim["lr_scale"] = {"net": 2.0, "heads": 0.0625}
    whole = TinyModel()
    ref = _fit(_cfg(tmp_path / "a", optim=optim, **kw), whole, train, val, test)
    # the logged lr is optim.lr's schedule, whatever the first group's scale
    assert [r["lr"] for r in ref.history] == pytest.approx([r["lr"] for r in plain.history])
    assert not torch.equal(whole.heads["a"].weight, plain_model.heads["a"].weight)

    cfg = _cfg(tmp_path / "b", optim=optim, **kw)
    with pytest.raises(KeyboardInterrupt):  # call 12 is step 9, after the step-8 checkpoint
        _fit(cfg, TinyModel(fail_at_call=12), train, val, test)
    saved = json.loads((tmp_path / "b/run/checkpoints/last/state.json").read_text())
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 2)
    resumed = TinyModel()
    res = _fit(cfg, resumed, train, val, test, resume=True)
    for k, v in _weights(whole).items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert res.test == ref.test


# ------------------------------------------------------------------ the optimiser


def test_adamw_is_fused_on_cpu_and_matches_the_default_kernel() -> None:
    from polymodal.training.params import adamw

    def run(fused: bool) -> tuple[torch.optim.AdamW, list[Tensor]]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 2))
        init.extend(p.detach().clone() for p in model.parameters())
        groups = param_groups(model, 0.1, 1e-2)
        opt = adamw(groups, 1e-2, (0.9, 0.99)) if fused else torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.99))  # fmt: skip
        x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
        for _ in range(20):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        return opt, [p.detach().clone() for p in model.parameters()]

    init: list[Tensor] = []
    fused_opt, fused = run(True)
    plain_opt, plain = run(False)
    assert all(g["fused"] for g in fused_opt.param_groups)
    assert not any(g["fused"] for g in plain_opt.param_groups)
    assert [g["weight_decay"] for g in fused_opt.param_groups] == [0.1, 0.0]  # groups kept
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fused[0], init[0], atol=1e-3)  # the steps moved the weights


def test_adamw_keeps_the_default_kernel_for_integer_or_meta_parameters() -> None:
    from polymodal.training.params import adamw

    meta = nn.Parameter(torch.empty(3, device="meta"))
    opt = adamw([{"params": [meta], "weight_decay": 0.0}], 1e-3, (0.9, 0.999))
    assert not opt.param_groups[0]["fused"]
