"""Training speed of polymodal's MulT against MMSA's MulT, side by side on one machine.

Both models train (forward + backward + AdamW step, train mode, L1 loss on a regression
target, as MMSA trains MulT on MOSI; polymodal's side steps with the optimiser its training
loop builds, :func:`polymodal.training.params.adamw` (torch's fused kernel), MMSA's with
AdamW ``foreach=True``) on the same synthetic batch,
drawn from a seeded ``torch.Generator``, at MOSI's unaligned shapes: text (B, 50, 768),
audio (B, 375, 5), video (B, 500, 20), B = 32.  MulT hyper-parameters: d = 30, 6 heads, 4 levels (4
cross-modal blocks per direction and 4 self-attention blocks per target, MMSA's
``max(nlevels, 3)``), kernel-1 projections, the same dropout on both sides: ``--dropout`` on
the residual branches, MLP hidden units and the head, ``--attn-dropout`` on the attention
weights (default 0, polymodal's default: a nonzero rate sends CPU attention to its unfused
path).

polymodal's side is a :class:`~polymodal.models.multimodal.MultimodalModel` built from the
library's parts: a pass-through encoder per modality (the features as an
``EncoderOutput`` sequence), the registered ``mult`` fusion (its per-modality linear map is
the kernel-1 Conv1d of MMSA), and MMSA's residual output MLP as the head.  MMSA's side is
``MMSA.models.singleTask.MULT.MULT`` imported from the installed ``mmsa`` package, run by a
worker process (this file with ``--worker mmsa``) in MMSA's own virtual environment;
polymodal's side runs in a worker process of this environment (``--worker polymodal``).
The sides run in alternating rounds (polymodal, MMSA, polymodal, ...), never at the same
time, with the same torch thread count, so machine noise hits both; and every side gets a
fresh process for each of ``--repeats`` repeats, because on a shared machine a process can
spend its whole life in a slower state (the same step 2.5 s in one process, 3.2 s in the
next), which one process pair would tie the ratio to.

Also reported: FLOPs per training sample of both models (``FlopCounterMode``, forward +
backward, matmul/conv/attention FLOPs; a fused attention's backward counted as the 4
matmuls of the unfused one, not with its recomputation; polymodal's attention at the model's
head size, not the 16 CPU attention pads narrower heads to), the machine's fp32 matmul rate
(1024 x 1024 x 1024, same threads), each model's achieved GFLOP/s and its fraction of
that rate, and the parameter counts.

Set up MMSA's environment (outside the repository; CPU torch, no other torch pulled)::

    python3 -m venv ../mmsa-venv
    ../mmsa-venv/bin/pip install torch==2.13.0
    ../mmsa-venv/bin/pip install --no-deps mmsa
    ../mmsa-venv/bin/pip install numpy easydict transformers   # what MULT.py imports

Run (about 8 minutes on 2 shared cores; ``--compile`` adds the compiled side)::

    POLYMODAL_DATA=../shared/data python benchmarks/mult_speed.py \\
        --mmsa-python ../mmsa-venv/bin/python

Without ``--mmsa-python`` (or when it cannot import MMSA) only polymodal's side runs and the
script says why.  Writes benchmarks/results/mult_speed.{json,md}.

This file runs in two environments: MMSA's worker (MMSA's venv) has no polymodal, so
polymodal and the result helpers are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

HERE = Path(__file__).resolve().parent
MODALITIES = ("text", "audio", "video")  # MMSA's argument order
SETUP_HELP = """\
To run MMSA's side, set up its environment (outside the repository) and pass its python:
    python3 -m venv ../mmsa-venv
    ../mmsa-venv/bin/pip install torch==2.13.0
    ../mmsa-venv/bin/pip install --no-deps mmsa
    ../mmsa-venv/bin/pip install numpy easydict transformers
    python benchmarks/mult_speed.py --mmsa-python ../mmsa-venv/bin/python"""


@dataclass(frozen=True)
class MulTSetup:
    """The shapes and hyper-parameters both sides are built with.

    Attributes:
        batch_size: B.
        lengths: steps per modality (text, audio, video); MOSI unaligned: 50, 375, 500.
        dims: features per modality (text, audio, video); MMSA's MOSI: 768, 5, 20.
        d_model: common width of the cross-modal streams (MMSA ``dst_feature_dim``).
        heads: attention heads (must divide ``d_model``).
        layers: cross-modal blocks per direction and self-attention blocks per target
            (MMSA ``nlevels``; its memory transformers use ``max(nlevels, 3)``).
        dropout: on residual branches, MLP hidden units and the head (MMSA ``res_dropout``,
            ``relu_dropout``, ``output_dropout``).
        attn_dropout: on the attention weights (MMSA ``attn_dropout``, ``attn_dropout_a``,
            ``attn_dropout_v``; polymodal ``mult``'s ``attn_dropout``).
        seed: seed of the generators for the synthetic batch and the weights.
        device: where both sides train (``cpu``, ``cuda``); fp32 on both.
    """

    batch_size: int = 32
    lengths: tuple[int, int, int] = (50, 375, 500)
    dims: tuple[int, int, int] = (768, 5, 20)
    d_model: int = 30
    heads: int = 6
    layers: int = 4
    dropout: float = 0.0
    attn_dropout: float = 0.0
    seed: int = 0
    device: str = "cpu"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MulTSetup:
        raw = json.loads(text)
        raw["lengths"] = tuple(raw["lengths"])
        raw["dims"] = tuple(raw["dims"])
        return cls(**raw)


def synthetic_batch(setup: MulTSetup) -> tuple[dict[str, Tensor], Tensor]:
    """Features per modality (B, L_m, D_m) and regression targets (B,) in [-3, 3].

    The same seed gives the same tensors in both environments (same torch), drawn on the
    CPU and moved to ``setup.device``.
    """
    g = torch.Generator().manual_seed(setup.seed)
    feats = {
        name: torch.randn(setup.batch_size, length, dim, generator=g).to(setup.device)
        for name, length, dim in zip(MODALITIES, setup.lengths, setup.dims, strict=True)
    }
    target = torch.rand(setup.batch_size, generator=g) * 6.0 - 3.0  # (B,)
    return feats, target.to(setup.device)


# --------------------------------------------------------------------------- FLOPs


def _cpu_sdpa_flop(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kw: Any
) -> int:
    # The fused CPU attention kernel, forward: QK^T and AV.
    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


def _cpu_sdpa_backward_flop(
    grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kw: Any
) -> int:
    # Backward: the 4 matmuls of an unfused attention's backward (the fused kernel's
    # recomputation of QK^T is not counted, so both sides count the same model FLOPs).
    return 2 * int(sdpa_flop_count(query_shape, key_shape, value_shape))


CPU_SDPA_FLOPS: dict[Any, Callable[..., int]] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls, convolutions and attentions ``fn()`` runs (forward and backward).

    ``torch.utils.flop_counter`` has no formula for the CPU fused attention kernel; it is
    added here (:data:`CPU_SDPA_FLOPS`).
    """
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        fn()
    return int(counter.get_total_flops())


def polymodal_model_flops(step: Callable[[], object]) -> int:
    """:func:`count_flops` of a polymodal step with attention at the model's own head size:
    the zero features CPU attention pads narrow heads with (``attend``) are not the model's
    work, so they are not counted, and both sides count the same FLOPs."""
    import polymodal.layers.transformer as layers

    saved = layers.CPU_MIN_HEAD_DIM
    layers.CPU_MIN_HEAD_DIM = 1
    try:
        return count_flops(step)
    finally:
        layers.CPU_MIN_HEAD_DIM = saved


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflop_per_s(n: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """Best fp32 (n x n) @ (n x n) rate in GFLOP/s over about ``seconds`` of repeats (on
    a GPU, 8 products per timing, so launch latency does not dominate)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    reps = 8 if torch.device(device).type == "cuda" else 1
    torch.mm(a, b)  # warm-up
    _sync(device)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2.0 * n**3 / best / 1e9


def time_steps(step: Callable[[], object], steps: int, device: str = "cpu") -> float:
    """Wall seconds of ``steps`` calls of ``step`` (the device's queue drained at both ends)."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - t0


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- polymodal side


class FeatureSequence(nn.Module):
    """The thinnest encoder: a (B, T, D) feature sequence passed through as an EncoderOutput.

    Every step is valid where the example is present; pooled is the masked mean.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        from polymodal.data.modality import ModalityKind

        self.kind = ModalityKind.FEATURES
        self.out_dim = dim

    def forward(self, batch: Any) -> Any:
        """Shape: batch.values (B, T, D) -> sequence (B, T, D), mask (B, T), pooled (B, D)."""
        from polymodal.encoders.base import EncoderOutput, masked_mean

        x = batch.values  # (B, T, D)
        mask = batch.present.to(torch.bool)[:, None].expand(x.shape[0], x.shape[1])  # (B, T)
        return EncoderOutput(x, mask, masked_mean(x, mask))


class ResidualHead(nn.Module):
    """MMSA MulT's output block: ``out(x + proj2(dropout(relu(proj1(x)))))``.

    Shape: x (B, D) -> (B, num_outputs).
    """

    def __init__(self, dim: int, num_outputs: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj1 = nn.Linear(dim, dim)
        self.proj2 = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, num_outputs)
        from polymodal.layers import Dropout

        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop(F.relu(self.proj1(x)))
        return self.out(x + self.proj2(h))  # type: ignore[no-any-return]


def build_polymodal_mult(setup: MulTSetup) -> nn.Module:
    """polymodal's MulT at ``setup``: pass-through encoders, ``mult`` fusion, residual head."""
    from polymodal.fusion.base import build_fusion
    from polymodal.models.multimodal import MultimodalModel

    torch.manual_seed(setup.seed)
    in_dims = dict(zip(MODALITIES, setup.dims, strict=True))
    fusion = build_fusion(
        "mult",
        in_dims,
        hidden_dim=setup.d_model,
        num_heads=setup.heads,
        num_layers=setup.layers,
        dropout=setup.dropout,
        attn_dropout=setup.attn_dropout,
    )
    encoders = {name: FeatureSequence(dim) for name, dim in in_dims.items()}
    head = ResidualHead(fusion.out_dim, 1, setup.dropout)
    model = MultimodalModel(encoders, fusion, head, task="regression", num_outputs=1)
    return model.to(setup.device)


def polymodal_batch(feats: dict[str, Tensor], target: Tensor) -> Any:
    """The synthetic features as a polymodal :class:`~polymodal.data.sample.Batch`."""
    from polymodal.data.sample import Batch, ModalityBatch

    b = target.shape[0]
    present = torch.ones(b, dtype=torch.bool, device=target.device)
    mods = {name: ModalityBatch(values=x, present=present) for name, x in feats.items()}
    return Batch(mods, target, [str(i) for i in range(b)])


def polymodal_step_fn(
    setup: MulTSetup, compiled: bool = False
) -> tuple[Callable[[], float], nn.Module]:
    """One training step of polymodal's MulT on the synthetic batch, and the model
    (``compiled``: its forward compiled as ``compile: true`` does, before the first step)."""
    model = build_polymodal_mult(setup).train()
    if compiled:
        from polymodal.training.compiled import compile_model

        if not compile_model(model, torch.device(setup.device)):
            raise RuntimeError("--compile: inductor cannot build kernels here (see the log)")
    batch = polymodal_batch(*synthetic_batch(setup))
    from polymodal.training.params import adamw, param_groups

    opt = adamw(param_groups(model, 0.0, 1e-3), 1e-3, (0.9, 0.999))  # the loop's optimiser

    def step() -> float:
        loss = F.l1_loss(model(batch).logits, batch.target)  # (B,) vs (B,)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step, model


# --------------------------------------------------------------------------- MMSA side


def import_mmsa_mult() -> type[nn.Module]:
    """``MMSA.models.singleTask.MULT.MULT`` from the installed package.

    ``MMSA/__init__.py`` and ``MMSA/models/__init__.py`` import MMSA's whole training stack
    (pandas, scikit-learn, pynvml, every model); MULT needs none of it, so those two
    package ``__init__`` files are replaced by empty packages on the installed folders,
    and MULT.py and its subNets are imported from the installed files.
    """
    import importlib.util

    spec = importlib.util.find_spec("MMSA")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'mmsa' package is not installed in this environment")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, folder in (
        ("MMSA", root),
        ("MMSA.models", root / "models"),
        ("MMSA.models.singleTask", root / "models" / "singleTask"),
    ):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(folder)]
            sys.modules[name] = pkg
    from MMSA.models.singleTask.MULT import MULT

    return MULT  # type: ignore[no-any-return]


def mmsa_args(setup: MulTSetup) -> types.SimpleNamespace:
    """MMSA's MulT arguments (config_regression.json 'mult' / mosi, unaligned) at ``setup``."""
    p, a = setup.dropout, setup.attn_dropout
    return types.SimpleNamespace(
        use_bert=False,  # text is 768-d precomputed features, as polymodal's side
        use_finetune=False,
        transformers="bert",
        pretrained="bert-base-uncased",
        dst_feature_dim_nheads=(setup.d_model, setup.heads),
        feature_dims=setup.dims,
        nlevels=setup.layers,
        attn_dropout=a,
        attn_dropout_a=a,
        attn_dropout_v=a,
        relu_dropout=p,
        res_dropout=p,
        output_dropout=p,
        embed_dropout=0.0,  # no polymodal equivalent (dropout on the transformer inputs)
        text_dropout=0.0,  # likewise (dropout on the raw text features)
        attn_mask=True,  # MMSA's shipped setting for MulT
        conv1d_kernel_size_l=1,  # kernel-1 projections, as polymodal's linear maps
        conv1d_kernel_size_a=1,
        conv1d_kernel_size_v=1,
        train_mode="regression",
        num_classes=1,
    )


def mmsa_step_fn(setup: MulTSetup) -> tuple[Callable[[], float], nn.Module]:
    """One training step of MMSA's MulT on the synthetic batch, and the model."""
    mult_cls = import_mmsa_mult()
    torch.manual_seed(setup.seed)
    model = mult_cls(mmsa_args(setup)).to(setup.device).train()
    feats, target = synthetic_batch(setup)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)

    def step() -> float:
        out = model(feats["text"], feats["audio"], feats["video"])["M"]  # (B, 1)
        loss = F.l1_loss(out.view(-1), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step, model


def _reply(obj: dict[str, Any]) -> None:
    print("@@" + json.dumps(obj), flush=True)


# what a worker process trains -> the method its rows are recorded under
WORKERS = {
    "polymodal": "polymodal_mult",
    "polymodal_compiled": "polymodal_mult_compiled",
    "mmsa": "mmsa_mult",
}


def serve(kind: str, setup: MulTSetup, threads: int) -> int:
    """Serve training rounds of one side over stdin/stdout (JSON lines; replies start '@@').

    The first reply carries the parameter count and the FLOPs of one step (counting it is
    also the warm-up step; the compiled side reports its compile time instead, its FLOPs
    being the eager model's).
    """
    torch.set_num_threads(threads)
    info: dict[str, Any] = {"ready": True, "torch": torch.__version__}
    if kind == "mmsa":
        step, model = mmsa_step_fn(setup)
        info["flops"] = count_flops(step)
    elif kind == "polymodal":
        step, model = polymodal_step_fn(setup)
        info["flops"] = polymodal_model_flops(step)
    else:
        step, model = polymodal_step_fn(setup, compiled=True)
        t0 = time.perf_counter()
        step()  # the first step compiles (forward and backward graphs)
        info["compile_seconds"] = time.perf_counter() - t0
    _reply({**info, "params": num_params(model)})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "run":
            _reply({"seconds": time_steps(step, int(cmd["steps"]), setup.device)})
        elif cmd["cmd"] == "quit":
            break
    return 0


class Worker:
    """One side in its own process, started with ``python`` and driven in rounds (a fresh
    one per repeat; the module docstring says why).  MMSA's side runs in MMSA's venv,
    outside the repository (its ``src/`` kept off the path); polymodal's in this
    interpreter's environment.
    """

    def __init__(self, python: str, kind: str, setup: MulTSetup, threads: int) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
        if kind == "mmsa":
            env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [
                *(python, str(Path(__file__).resolve()), "--worker", kind),
                *("--setup-json", setup.to_json(), "--threads", str(threads)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=tempfile.gettempdir() if kind == "mmsa" else None,
            env=env,
        )
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])  # type: ignore[no-any-return]
        self.proc.wait()
        self.log.seek(0)
        lines = self.log.read().strip().splitlines() or ["(no output)"]
        raise RuntimeError(f"the worker exited with code {self.proc.returncode}: {lines[-1]}")

    def run(self, steps: int) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": "run", "steps": steps}) + "\n")
        self.proc.stdin.flush()
        return float(self._read()["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# --------------------------------------------------------------------------- main


@dataclass
class SideResult:
    method: str
    params: int
    flops_per_sample: float
    samples_per_s: list[float] = field(default_factory=list)


def _start_mmsa(python: str | None, setup: MulTSetup, threads: int) -> Worker | str:
    """MMSA's worker, or the reason MMSA's side is skipped."""
    if python is None:
        return "no --mmsa-python given"
    if not Path(python).exists():
        return f"--mmsa-python {python} does not exist"
    try:
        return Worker(python, "mmsa", setup, threads)
    except (OSError, RuntimeError) as err:
        return f"the worker could not start MMSA's MulT with {python}: {err}"


def _describe(workers: dict[str, Worker], sides: dict[str, SideResult], batch: int) -> None:
    """Each side's parameters and FLOPs per sample, from its first worker's reply."""
    for kind, worker in workers.items():
        flops = worker.info.get("flops", workers["polymodal"].info["flops"])  # compiled: eager's
        sides[kind] = SideResult(WORKERS[kind], worker.info["params"], flops / batch)
        if "compile_seconds" in worker.info:
            print(f"compiled in {worker.info['compile_seconds']:.0f} s", flush=True)
        if worker.info["torch"] != torch.__version__:
            print(f"warning: the {kind} worker runs torch {worker.info['torch']}", flush=True)
        print(
            f"{WORKERS[kind]}: {worker.info['params']} parameters, "
            f"{flops / batch / 1e9:.3f} GFLOP per training sample",
            flush=True,
        )


def _device_name(device: str) -> str:
    """``cpu``, or the GPU's name (``NVIDIA H200``)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def _repeat_ratios(num: list[float], den: list[float], repeats: int) -> list[float]:
    """Per repeat, the ratio of the two sides' median samples/s over its rounds."""
    n, m = len(num) // repeats, len(den) // repeats
    return [
        statistics.median(num[i * n : (i + 1) * n]) / statistics.median(den[i * m : (i + 1) * m])
        for i in range(repeats)
    ]


def _stats(xs: list[float]) -> tuple[float, float | None]:
    return statistics.median(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mmsa-python", default=None, help="python of the venv with mmsa")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timed rounds a repeat")
    ap.add_argument(
        "--repeats", type=int, default=3, help="fresh worker processes per side, one after another"
    )
    ap.add_argument("--steps", type=int, default=2, help="polymodal training steps per round")
    ap.add_argument("--mmsa-steps", type=int, default=1, help="MMSA training steps per round")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--d-model", type=int, default=30)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--attn-dropout", type=float, default=0.0)
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time polymodal's MulT compiled (compile: true), in the same rounds",
    )
    ap.add_argument("--lengths", type=int, nargs=3, default=[50, 375, 500], metavar="L")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where both sides train (fp32)")
    ap.add_argument("--commit", default=None, help="stamp to record when the tree has no .git")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--worker", choices=list(WORKERS), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--setup-json", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker is not None:
        return serve(args.worker, MulTSetup.from_json(args.setup_json), args.threads)

    sys.path.insert(0, str(HERE))
    from _common import merge_records, previous_records, print_table, record, write_results

    torch.set_num_threads(args.threads)
    setup = MulTSetup(
        batch_size=args.batch_size,
        lengths=tuple(args.lengths),
        d_model=args.d_model,
        heads=args.heads,
        layers=args.layers,
        dropout=args.dropout,
        attn_dropout=args.attn_dropout,
        device=args.device,
    )
    b = setup.batch_size
    print(f"setup: {setup}", flush=True)
    dev = setup.device
    n_mm = 1024 if torch.device(dev).type == "cpu" else 8192
    peak = matmul_gflop_per_s(n_mm, device=dev)
    print(f"fp32 matmul {n_mm}^3: {peak:.1f} GFLOP/s on {dev} ({args.threads} threads)", flush=True)

    kinds = ["polymodal", "polymodal_compiled"] if args.compile else ["polymodal"]
    sides: dict[str, SideResult] = {}
    skipped: str | None = None
    t_start = time.perf_counter()
    for rep in range(args.repeats):
        workers: dict[str, Worker] = {}
        try:
            for kind in kinds:
                workers[kind] = Worker(sys.executable, kind, setup, args.threads)
            if skipped is None:
                mmsa = _start_mmsa(args.mmsa_python, setup, args.threads)
                if isinstance(mmsa, str):
                    skipped = mmsa
                    print(f"MMSA side SKIPPED: {mmsa}.\n{SETUP_HELP}", flush=True)
                else:
                    workers["mmsa"] = mmsa
            if rep == 0:
                _describe(workers, sides, b)
            for r in range(args.rounds):
                msg = f"repeat {rep + 1}/{args.repeats}, round {r + 1}/{args.rounds}:"
                for kind, worker in workers.items():
                    steps = args.mmsa_steps if kind == "mmsa" else args.steps
                    sides[kind].samples_per_s.append(b * steps / worker.run(steps))
                    msg += f" {kind} {sides[kind].samples_per_s[-1]:.2f}"
                print(msg + " samples/s", flush=True)
        finally:
            for worker in workers.values():
                worker.close()
    seconds = time.perf_counter() - t_start
    peak = max(peak, matmul_gflop_per_s(n_mm, device=dev))  # best of before and after
    print(f"fp32 matmul {n_mm}^3, best of before and after: {peak:.1f} GFLOP/s", flush=True)

    dataset = "mosi_unaligned_synthetic"
    common = {
        "batch_size": b,
        "threads": args.threads,
        "d_model": setup.d_model,
        "heads": setup.heads,
        "layers": setup.layers,
        "dropout": setup.dropout,
        "attn_dropout": setup.attn_dropout,
        "device": _device_name(dev),
        "repeats": args.repeats,
    }
    records: list[dict[str, Any]] = []
    for side in sides.values():
        sps, sps_std = _stats(side.samples_per_s)
        gflop = side.flops_per_sample / 1e9
        n = len(side.samples_per_s)
        records += [
            record("mult_speed", dataset, side.method, "samples_per_s", sps, sps_std, n, seconds, **common),
            record("mult_speed", dataset, side.method, "gflop_per_sample", gflop, **common),
            record("mult_speed", dataset, side.method, "gflop_per_s", gflop * sps, n_seeds=n, **common),
            record("mult_speed", dataset, side.method, "fraction_of_matmul_peak", gflop * sps / peak, n_seeds=n, **common),
            record("mult_speed", dataset, side.method, "params", side.params, **common),
        ]  # fmt: skip
    records.append(
        record("mult_speed", dataset, f"matmul_{n_mm}", "matmul_gflop_per_s", peak, **common)
    )
    pairs = [("polymodal_vs_mmsa", "polymodal", "mmsa")]
    pairs += [("polymodal_compiled_vs_eager", "polymodal_compiled", "polymodal")]
    pairs += [("polymodal_compiled_vs_mmsa", "polymodal_compiled", "mmsa")]
    for method, num, den in pairs:
        if num not in sides or den not in sides:
            continue
        ratios = _repeat_ratios(sides[num].samples_per_s, sides[den].samples_per_s, args.repeats)
        mean, std = statistics.mean(ratios), _stats(ratios)[1]
        records.append(
            record("mult_speed", dataset, method, "ratio", mean, std, len(ratios), **common)
        )
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"samples/s ratio {method}: {mean:.2f} (repeats: {each})", flush=True)
    print_table(records)

    notes = [
        "Training steps (forward, backward, AdamW) on one synthetic batch at MOSI's unaligned "
        "shapes (text 50 x 768, audio 375 x 5, video 500 x 20); L1 loss on a regression "
        "target; the sides alternate in rounds on the same machine with the same threads, "
        "each in its own process, and every side gets a fresh process per repeat (a "
        "process can run a whole life in a slower state of a shared machine). "
        "samples_per_s: median over all rounds of all repeats (std over them); ratio: per "
        "repeat, the two sides' median samples/s divided, then the mean over repeats (std "
        "over repeats, n_seeds = repeats). Rows without `repeats` ran both sides in one "
        "process pair.",
        "gflop_per_sample: matmul/conv/attention FLOPs of one training step (forward + "
        "backward, optimizer excluded) / batch size, from FlopCounterMode (the fused CPU "
        "attention counted as the 2 + 4 matmuls of an unfused one); gflop_per_s = "
        "gflop_per_sample x samples_per_s; fraction_of_matmul_peak: gflop_per_s over the fp32 "
        "matmul rate (1024^3 on CPU, 8192^3 on a GPU; best of one measurement before and one "
        "after the rounds). On a GPU (rows with a device) both sides run in fp32 (TF32 "
        "matmuls off, torch's default) and each timed round ends with the GPU's queue "
        "drained. "
        "Optimizer on both sides: torch.optim.AdamW(lr=1e-3, foreach=True).",
        "MMSA: MMSA.models.singleTask.MULT.MULT (mmsa 2.2.1) with use_bert=False (768-d text "
        "features in, so both sides run only MulT), kernel-1 Conv1d projections, "
        "attn_mask=True (its shipped setting), embed/text dropout 0.",
        "Parameter counts differ by design details: polymodal's cross-modal blocks normalise "
        "queries and keys with separate LayerNorms (MMSA shares one), its input maps have "
        "biases, and MMSA's cross-modal stacks end with a LayerNorm each; polymodal pools a "
        "masked mean over steps where MMSA takes the last step, and uses GELU (MMSA ReLU) and "
        "sinusoidal positions (MMSA none, a sqrt(d) input scale).",
        "dropout: on residual branches, MLP hidden units and the head; attn_dropout: on the "
        "attention weights (rows from before the two were split, commit 853d8b3, ran at "
        "dropout 0, i.e. attn_dropout 0). polymodal_mult_compiled (--compile): the same model "
        "with its forward compiled by torch.compile (inductor, C++ kernels), timed in the same "
        "rounds after a first, compiling step; its FLOPs are the eager model's.",
    ]
    if skipped is not None:
        notes.append(
            f"MMSA side SKIPPED: {skipped}. Set up MMSA's venv as the docstring of "
            "benchmarks/mult_speed.py says and pass --mmsa-python."
        )
    # keep the other settings' rows (rows from before --attn-dropout dropped the attention
    # weights at --dropout; rows from before --device ran on the CPU)
    previous = [
        {**r, "attn_dropout": r.get("attn_dropout", r["dropout"]), "device": r.get("device", "cpu")}
        for r in previous_records("mult_speed", args.results_dir)
    ]
    if args.commit is not None:
        for rec in records:
            rec["commit"] = args.commit
    key = ("dataset", "method", "dropout", "attn_dropout", "device")
    records = merge_records(previous, records, key=key)
    cmd = "POLYMODAL_DATA=../shared/data python benchmarks/mult_speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_results(
        "mult_speed",
        records,
        title="MulT training speed: polymodal vs MMSA",
        notes="\n\n".join(notes),
        command=cmd.strip(),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
