"""``compile: true``: the model's forward compiled in place (checkpoint keys unchanged),
the same training as eager; without a C++ compiler, eager with a warning that says why.

Tolerance: inductor fuses and reorders float operations, so compiled and eager weights
agree to 1e-5 after a short run (measured: identical to 1e-6 in the logged losses)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from polymodal.checkpoint import load_checkpoint
from polymodal.data.sample import Batch
from polymodal.models import ModelOutput
from polymodal.training import compiled
from tests.training.test_loop import TinyModel, _cfg, _data, _fit


class _Fusion(nn.Module):
    """Both modalities concatenated -> MLP -> logits; every parameter gets a gradient
    (a compiled backward gives a parameter that reaches only an unused output a zero
    gradient where eager gives none, so AdamW would decay it in one and not the other)."""

    task = "classification"
    num_outputs = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(7, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 2))

    def forward(self, batch: Batch) -> ModelOutput:
        h = torch.cat([batch["a"].values, batch["b"].values], -1)  # (B, 7)
        return ModelOutput(self.net(h), h, None, None)


def _fail() -> str:
    from torch._inductor.exc import InvalidCxxCompiler

    raise InvalidCxxCompiler


def test_without_a_cpp_compiler_the_model_stays_eager_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from torch._inductor import cpp_builder

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", _fail)
    model = TinyModel()
    with caplog.at_level(logging.WARNING, logger="polymodal.training"):
        assert not compiled.compile_model(model, torch.device("cpu"))
    assert "no C++ compiler (InvalidCxxCompiler; install g++ or set $CXX)" in caplog.text
    assert model._compiled_call_impl is None


@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs g++ here")
def test_compile_model_compiles_in_place_keeping_the_keys() -> None:
    model = TinyModel()
    keys = list(model.state_dict())
    assert compiled.missing_backend(torch.device("cpu")) is None
    assert compiled.compile_model(model, torch.device("cpu"))
    assert model._compiled_call_impl is not None and list(model.state_dict()) == keys


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs g++ here")
def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    optim = {"lr": 3e-2, "epochs": 1, "warmup_ratio": 0.1}
    runs = {}
    for flag in (False, True):
        cfg = _cfg(tmp_path / str(flag), optim=optim, compile=flag)
        runs[flag] = _fit(cfg, _Fusion(), *_data()).checkpoint
    eager, comp = (load_checkpoint(runs[f]).weights for f in (False, True))
    assert eager.keys() == comp.keys()
    for k in eager:
        torch.testing.assert_close(comp[k], eager[k], atol=1e-5, rtol=0, msg=k)
