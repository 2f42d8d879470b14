"""``distributed.parallel=fsdp``: FSDP2 runs (gloo, CPU) end where one process ends, save the
one checkpoint format (``evaluate`` loads it in one process) and resume bit for bit.

Tolerance: FSDP takes the same steps on the same global batches as one process; its
gradients are averaged by a reduce-scatter instead of DDP's all-reduce, so as under DDP
only the order of float additions differs: the weights agree to 1e-4 (measured 2.8e-5 on
the tiny run), the metrics and the logged training loss to 1e-6 (measured 1e-7).  The
multi-process tests start torchrun as ``test_distributed.py`` does and are marked ``slow``.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from polymodal.layers.transformer import TransformerBlock
from polymodal.training import fsdp, load_config, train
from polymodal.training.config import DistributedConfig
from polymodal.training.distributed import DataParallel, DistInfo
from polymodal.training.params import param_groups
from tests.training.test_distributed import (
    DRIVER,
    STANDALONE,
    _assert_same_run,
    _config,
    _env,
    _run,
    _torchrun,
)

FSDP = "distributed.parallel=fsdp"
#: a fusion of transformer blocks (each a unit of its own), in bf16 (FSDP's mixed precision)
BLOCKS = [
    "model.fusion.name=bottleneck",
    "model.fusion.params.hidden_dim=16",
    "model.fusion.params.num_heads=2",
    "precision=bf16",
]


class _Deep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.blocks = nn.ModuleList([TransformerBlock(8, 2)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks[0](self.inp(x).unsqueeze(1))  # type: ignore[no-any-return]


class _Net(nn.Module):
    """Two encoders (one frozen, one with its own block), fusion blocks, a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoders = nn.ModuleDict({"deep": _Deep(), "frozen": nn.Linear(4, 8)})
        self.encoders["frozen"].requires_grad_(False)
        self.blocks = nn.ModuleList([TransformerBlock(8, 2), TransformerBlock(8, 2)])
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoders["deep"](x) + self.encoders["frozen"](x).unsqueeze(1)  # (B, 1, 8)
        for block in self.blocks:
            h = block(h)
        return self.head(h[:, 0])  # type: ignore[no-any-return]


def test_shard_units_are_trainable_blocks_and_encoders_deepest_first() -> None:
    net = _Net()
    deep = net.encoders["deep"]
    expected = [deep.blocks[0], deep, net.blocks[0], net.blocks[1]]  # frozen: not a unit
    assert [id(m) for m in fsdp.shard_units(net)] == [id(m) for m in expected]
    net.blocks.requires_grad_(False)
    assert [id(m) for m in fsdp.shard_units(net)] == [id(deep.blocks[0]), id(deep)]


def test_fsdp_refuses_what_it_cannot_shard() -> None:
    cfg = SimpleNamespace(
        task="contrastive", compile=False, distributed=DistributedConfig(parallel="fsdp")
    )
    with pytest.raises(ValueError, match=r"task: contrastive trains through other methods"):
        DataParallel(SimpleNamespace(shardable=False), DistInfo(0, 2), cfg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"parallel.*'ddp', 'fsdp'"):
        DistributedConfig.from_dict({"parallel": "zero3"})


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[None]:
    """A gloo process group of one rank in this process (world size 1: the loop still
    counts as single-process)."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def _step(model: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(seed))
    model(x).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()


def _adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, 0.01), lr=1e-2)


def _assert_same_optimizer_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k in a["state"][i]:
            torch.testing.assert_close(a["state"][i][k], b["state"][i][k], atol=1e-6, rtol=0)


def test_sharded_state_is_saved_and_loaded_in_the_plain_formats(one_rank_group: None) -> None:
    """A sharded model's full weights and optimiser state are ``state_dict()``'s and
    ``optimizer.state_dict()``'s (numbered parameters), and load back from them."""
    plain, sharded = _Net(), _Net()
    fsdp.shard(sharded, torch.device("cpu"), "fp32")
    opt_plain, opt_sharded = _adamw(plain), _adamw(sharded)
    for seed in (1, 2):
        _step(plain, opt_plain, seed)
        _step(sharded, opt_sharded, seed)
    weights = fsdp.full_weights(sharded)
    assert weights.keys() == plain.state_dict().keys()
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(weights[k], v, atol=1e-6, rtol=0)
    _assert_same_optimizer_state(
        fsdp.full_optimizer_state(sharded, opt_sharded), opt_plain.state_dict()
    )

    again = _Net()  # the initial weights: loading must replace them
    fsdp.shard(again, torch.device("cpu"), "fp32")
    opt_again = _adamw(again)
    fsdp.load_full_weights(again, copy.deepcopy(plain.state_dict()), "plain")
    fsdp.load_full_optimizer_state(again, opt_again, copy.deepcopy(opt_plain.state_dict()))
    _step(plain, opt_plain, 3)
    _step(again, opt_again, 3)
    for k, v in fsdp.full_weights(again).items():
        torch.testing.assert_close(v, plain.state_dict()[k], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"head.weight: checkpoint \(3, 8\) vs model \(2, 8\)"):
        fsdp.load_full_weights(again, {**plain.state_dict(), "head.weight": torch.zeros(3, 8)}, "x")


# --------------------------------------------------------------------------- torchrun


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny config of ``test_distributed.py`` in this process and under FSDP."""
    tmp = tmp_path_factory.mktemp("fsdp")
    config = _config(tmp)
    train(load_config(config, [f"output_dir={tmp / 'one'}"]))
    program = ["-m", "polymodal", "train", str(config), FSDP, f"output_dir={tmp / 'fsdp'}"]
    _run(_torchrun(STANDALONE, program))
    return {"tmp": tmp, "config": config, "one": tmp / "one", "fsdp": tmp / "fsdp"}


@pytest.mark.slow
def test_fsdp_matches_one_process_and_its_checkpoint_loads_in_one(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from polymodal.cli.main import main

    _assert_same_run(runs["one"], runs["fsdp"])
    test = json.loads((runs["fsdp"] / "results.json").read_text())["test"]
    assert main(["evaluate", str(runs["fsdp"]), "--device", "cpu"]) == 0  # one process
    out = capsys.readouterr().out
    assert f"loss {test['loss']:10.4f}".replace(" ", "") in out.replace(" ", "")


@pytest.mark.slow
def test_fsdp_sigkill_of_a_rank_then_resume_matches_an_uninterrupted_run(
    runs: dict[str, Path],
) -> None:
    """Transformer blocks as units, bf16: rank 1 is SIGKILLed after the first
    checkpoints/last; ``--resume`` ends bit for bit where the uninterrupted run ends."""
    tmp, config = runs["tmp"], runs["config"]
    whole, cut, held = tmp / "whole", tmp / "cut", tmp / "held"
    _run(
        _torchrun(
            STANDALONE,
            ["-m", "polymodal", "train", str(config), FSDP, *BLOCKS, f"output_dir={whole}"],
        )
    )
    overrides = [FSDP, *BLOCKS, f"output_dir={cut}", "checkpoint_every_steps=1"]
    proc = subprocess.Popen(
        _torchrun(STANDALONE, [str(DRIVER), "hold", str(config), str(held), *overrides]),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    rank1 = Path(f"{held}.rank1")
    try:
        while not (held.exists() and rank1.exists()) and proc.poll() is None:
            time.sleep(0.05)  # waits for an event (rank 0 holds), not a time
        assert held.exists() and rank1.exists(), proc.stderr.read().decode() if proc.stderr else ""
        os.kill(int(rank1.read_text()), signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state = json.loads((cut / "checkpoints" / "last" / "state.json").read_text())
    assert (state["epoch"], state["global_step"]) == (0, 1)
    _run(_torchrun(STANDALONE, ["-m", "polymodal", "train", str(config), *overrides, "--resume"]))
    _assert_same_run(whole, cut, atol=0.0)
