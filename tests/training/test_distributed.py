"""``torchrun ... -m polymodal train``: data-parallel runs (gloo, CPU) end where one process
ends, on one machine or two, after a SIGKILL of a rank too; each rank's share of an epoch.

The multi-process tests start ``python -m torch.distributed.run`` (torchrun) in a
subprocess on a tiny manifest; they are marked ``slow``.  Tolerance: one process and two
take the same steps on the same global batches; only the order of float additions differs
(the two halves' gradients are averaged by DDP).  AdamW divides each gradient by its own
running norm, which magnifies that rounding on near-zero gradients: after 10 steps at lr
1e-2 the weights differ by up to ~3e-5 (measured), so they are compared to 1e-4; the
metrics and the logged training loss agree to 1e-6.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from polymodal.checkpoint import load_checkpoint
from polymodal.training import load_config, train
from polymodal.training.data import EpochBatches
from polymodal.training.distributed import DistInfo, rank_device, shard

DRIVER = Path(__file__).with_name("dist_driver.py")
ATOL = 1e-4  # weights: the same steps, float additions in another order (see above)


# --------------------------------------------------------------------------- fast


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("start", [0, 2])
def test_each_rank_takes_a_disjoint_share_of_every_batch(world: int, start: int) -> None:
    n, bs = 23, 6  # batches of 6, 6, 6, 5: the last does not divide by 2 or 3
    one = list(EpochBatches(n, bs, seed=4, epoch=1, start=start))
    ranks = [
        list(EpochBatches(n, bs, seed=4, epoch=1, start=start, rank=DistInfo(r, world)))
        for r in range(world)
    ]
    assert all(len(r) == len(one) == 4 - start for r in ranks)  # the same number of steps
    for step, batch in enumerate(one):
        shares = [r[step] for r in ranks]
        assert len({len(s) for s in shares}) == 1  # equal sizes (padded by wrapping)
        union = [i for s in shares for i in s]
        assert set(union) == set(batch)  # nothing lost
        if len(batch) % world == 0:
            assert sorted(union) == sorted(batch)  # disjoint
    assert [i for b in one for i in b] == torch.randperm(
        n, generator=torch.Generator().manual_seed(5)
    ).tolist()[start * bs :]


def test_one_process_batches_are_the_data_loader_batches() -> None:
    from polymodal.training.data import EpochSampler

    order = list(EpochSampler(10, seed=3, epoch=2, start=4))
    batches = list(EpochBatches(10, 4, seed=3, epoch=2, start=1))
    assert batches == [order[:4], order[4:]]


def test_shard_pads_by_wrapping() -> None:
    rows = torch.tensor([7, 8, 9])
    assert shard(rows, DistInfo(0, 1)) is rows
    assert [shard(rows, DistInfo(r, 2)).tolist() for r in range(2)] == [[7, 8], [9, 7]]
    assert [shard(rows[:1], DistInfo(r, 2)).tolist() for r in range(2)] == [[7], [7]]


def _rank_batches(strategy: Any, epoch: int) -> list[list[str]]:
    return [list(b.ids) for b in strategy.batches(epoch, 1)]


def test_supervised_strategy_gives_each_rank_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strategy reads its rank when it makes its loader: rank r's batches are slice r
    of the one-process batches (96 examples, batch 16: 6 steps of 8 per rank)."""
    import polymodal.training.supervised as supervised
    from tests.training.test_loop import TinyModel, _cfg, _data

    cfg = _cfg(tmp_path, batch_size=16)

    def batches(info: DistInfo) -> list[list[str]]:
        monkeypatch.setattr(supervised, "current", lambda: info)
        strategy = supervised.SupervisedStrategy(cfg, TinyModel(), *_data())
        return _rank_batches(strategy, epoch=2)

    one, r0, r1 = batches(DistInfo()), batches(DistInfo(0, 2)), batches(DistInfo(1, 2))
    assert len(one) == len(r0) == len(r1) == 5  # from step 1 of 6
    for full, a, b in zip(one, r0, r1, strict=True):
        assert (len(a), len(b)) == (8, 8) and a + b == full


def test_contrastive_strategy_gives_each_rank_its_share(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import polymodal.joint.train as joint
    from polymodal.joint.model import JointConfig, JointEmbeddingModel
    from tests.joint.test_train import _captioned, _mod, _run_config

    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    cfg = _run_config(config, tmp_path / "run", batch_size=6)

    def steps(info: DistInfo) -> list[tuple[list[int], list[int]]]:
        monkeypatch.setattr(joint, "current", lambda: info)
        strategy = joint.ContrastiveStrategy(
            cfg, JointEmbeddingModel(config), train={"image-text": _captioned(12, 1, seed=0)}
        )
        strategy.setup(torch.device("cpu"))
        return [(a.tolist(), o.tolist()) for ((_, a, o),) in strategy.batches(1, 0)]

    one, r0, r1 = steps(DistInfo()), steps(DistInfo(0, 2)), steps(DistInfo(1, 2))
    assert len(one) == len(r0) == len(r1) == 2
    for (a, o), (a0, o0), (a1, o1) in zip(one, r0, r1, strict=True):
        assert (a0 + a1, o0 + o1) == (a, o) and len(a0) == len(a1) == 3


def test_rank_device() -> None:
    assert rank_device("cpu", DistInfo(1, 2, 1)) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert rank_device("auto", DistInfo(1, 2, 1)) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device='cuda:0' puts every one of the 2 processes"):
        rank_device("cuda:0", DistInfo(1, 2, 1))


# --------------------------------------------------------------------------- torchrun


def _manifest(tmp: Path) -> Path:
    """48 train rows (8 groups; validation: 2 groups = 12 rows), 16 test rows; two feature
    modalities, label = sign of a[0] + b[0].  36 train rows / batch 8: every batch even."""
    g = torch.Generator().manual_seed(0)
    lines = []
    for split, n in (("train", 48), ("test", 16)):
        a, b = torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g)
        y = (a[:, 0] + b[:, 0] > 0).long()
        for i in range(n):
            row = {
                "id": f"{split}{i}",
                "split": split,
                "group": f"g{i % 8}",
                "a": [round(v, 4) for v in a[i].tolist()],
                "b": [round(v, 4) for v in b[i].tolist()],
                "label": ["neg", "pos"][int(y[i])],
            }
            lines.append(json.dumps(row) + "\n")
    path = tmp / "m.jsonl"
    path.write_text("".join(lines))
    return path


def _config(tmp: Path) -> Path:
    cfg = {
        "name": "tiny",
        "data": {"manifest": str(_manifest(tmp)), "batch_size": 8, "val_fraction": 0.25},
        "model": {"encoders": {"a": {"name": "mlp"}, "b": {"name": "mlp"}}},
        "optim": {"epochs": 2, "lr": 0.01},
        "device": "cpu",
        "progress": False,
        "patience": None,
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(launcher: list[str], program: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher, *program]


STANDALONE = ["--standalone", "--nproc_per_node", "2"]  # one machine, a free port


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _weights(run: Path, which: str = "best") -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / which).weights


def _assert_same_run(a: Path, b: Path, atol: float = ATOL) -> None:
    for which in ("best", "last"):
        wa, wb = _weights(a, which), _weights(b, which)
        assert wa.keys() == wb.keys()  # no "module." prefix: the unwrapped model's keys
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=f"{which} {k}")
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (a, b))
    assert ra["best_epoch"] == rb["best_epoch"]
    for split in ("val", "test"):
        assert ra[split].keys() == rb[split].keys()
        for k in ra[split]:
            assert ra[split][k] == pytest.approx(rb[split][k], abs=1e-6), (split, k)
    ha, hb = (
        [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in (a, b)
    )
    assert [h["train_loss"] for h in ha] == pytest.approx([h["train_loss"] for h in hb], abs=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny config trained in this process and by torchrun with 2 processes."""
    tmp = tmp_path_factory.mktemp("ddp")
    config = _config(tmp)
    train(load_config(config, [f"output_dir={tmp / 'one'}"]))
    out = _run(
        _torchrun(
            STANDALONE, ["-m", "polymodal", "train", str(config), f"output_dir={tmp / 'two'}"]
        )
    )
    assert out.count("metric") == 1  # rank 0 alone prints the table
    return {"tmp": tmp, "config": config, "one": tmp / "one", "two": tmp / "two"}


@pytest.mark.slow
def test_two_processes_match_one(runs: dict[str, Path]) -> None:
    _assert_same_run(runs["one"], runs["two"])
    files = sorted(p.name for p in runs["two"].iterdir())
    assert files == sorted(p.name for p in runs["one"].iterdir())  # rank 0's files, no lock left


@pytest.mark.slow
def test_two_machines_match_one(runs: dict[str, Path]) -> None:
    """Two torchrun launches of one process each, meeting at a c10d rendezvous."""
    port, out = _free_port(), runs["tmp"] / "nodes"
    program = ["-m", "polymodal", "train", str(runs["config"]), f"output_dir={out}"]
    nodes = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_id", "hd"]
    endpoint = ["--rdzv_endpoint", f"127.0.0.1:{port}"]
    procs = [
        subprocess.Popen(
            _torchrun([*nodes, *endpoint, "--node_rank", str(node)], program),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:  # a launch that lost its partner would wait at the rendezvous
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    _assert_same_run(runs["one"], out)


@pytest.mark.slow
def test_sigkill_of_a_rank_then_resume_matches_an_uninterrupted_run(
    runs: dict[str, Path],
) -> None:
    """Rank 0 holds after its first checkpoints/last (step 1 of epoch 1); rank 1 is
    SIGKILLed; ``torchrun ... --resume`` ends with the uninterrupted 2-process weights."""
    tmp, config = runs["tmp"], runs["config"]
    cut, held = tmp / "cut", tmp / "held"
    overrides = [f"output_dir={cut}", "checkpoint_every_steps=1"]
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
        proc.wait(timeout=120)  # torchrun stops the other rank and fails
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    state = json.loads((cut / "checkpoints" / "last" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 1, 1)
    assert not (cut / "results.json").exists()

    _run(_torchrun(STANDALONE, ["-m", "polymodal", "train", str(config), *overrides, "--resume"]))
    _assert_same_run(runs["two"], cut, atol=0.0)  # the same 2-process steps: bit for bit


@pytest.mark.slow
def test_contrastive_and_context_two_processes_match_one(tmp_path: Path) -> None:
    """The other two tasks under one torchrun launch: a contrastive run (the loss gathers
    both ranks' embeddings: local_loss and gather_with_grad) and a context run on MOSI."""
    from tests.training.dist_driver import modes

    modes(tmp_path / "one")
    _run(_torchrun(STANDALONE, [str(DRIVER), "modes", str(tmp_path / "two")]))
    for task, metrics in (
        ("joint", ("val_r1_mean", "val_image2text_r@1")),
        ("joint_multi", ("val_r1_mean", "val_image2text_r@1")),
        ("context", ("val_accuracy", "val_loss")),
    ):
        one, two = tmp_path / "one" / task, tmp_path / "two" / task
        _assert_weights_close(one, two)
        h1, h2 = (
            [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
            for r in (one, two)
        )
        assert len(h1) == len(h2) == 2
        for a, b in zip(h1, h2, strict=True):
            for k in ("train_loss", *metrics):
                assert a[k] == pytest.approx(b[k], abs=1e-6), (task, k)


def _assert_weights_close(a: Path, b: Path) -> None:
    for which in ("best", "last"):
        ca, cb = (load_checkpoint(r / "checkpoints" / which) for r in (a, b))
        assert ca.weights.keys() == cb.weights.keys()
        for k in ca.weights:
            torch.testing.assert_close(ca.weights[k], cb.weights[k], atol=ATOL, rtol=0)
        ta, tb = ca.trainer_state["strategy"], cb.trainer_state["strategy"]  # temperatures
        assert ta.keys() == tb.keys()
        for k in ta:
            torch.testing.assert_close(ta[k], tb[k], atol=ATOL, rtol=0)
