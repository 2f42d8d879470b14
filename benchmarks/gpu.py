"""Training speed on a GPU: polymodal's loop against a bare hand-written torch loop.

The same model trains twice in one run, through :class:`polymodal.training.Trainer` (the
loop every ``polymodal train`` uses: its data loader and collate, autocast, gradient
clipping, AdamW, the warmup + cosine schedule, validation and checkpoints after every
epoch) and through the shortest loop a careful engineer would write by hand (the data
collated once and kept on the GPU, a random permutation per epoch, autocast, AdamW,
clipping, no validation, no checkpoints, no per-step host synchronisation).  Both run in
alternating rounds, so machine noise hits both.  Reported per model:

- ``samples_per_s``: training examples per second over the timed epochs (the first epoch,
  with cuDNN autotuning and allocator warm-up, is not timed); for polymodal's loop the
  trainer's own per-epoch training seconds (validation and checkpoint writes excluded;
  ``samples_per_s_with_eval`` includes them);
- ``ratio_to_bare_loop``: polymodal's samples/s over the bare loop's (target >= 0.95);
- ``mfu``: model FLOPs utilisation, FLOPs per training example (forward + backward, counted
  with ``torch.utils.flop_counter``) x samples/s over the bf16 matmul rate measured in the
  same run (8192^3 products); ``tflops`` the achieved rate;
- ``peak_memory_mb``: ``torch.cuda.max_memory_allocated`` during the run.

Models (bf16 autocast; synthetic inputs of the real data's shapes, since the GPU machine
holds no data sets; speed does not depend on the values):

- ``av_digits``: the model of configs/av_digits.yaml (audio_cnn on 8 kHz speech of 0.25-1 s,
  image_cnn on 28x28 digits, early fusion), batch 256;
- ``flickr8k``: the joint model of configs/flickr8k.yaml (residual projections of 1280-d
  image and 384-d text features into a 512-d space, CLIP loss with a learned temperature),
  6,000 images with 5 captions each, batch 1024.  The frozen encoders' features are
  inputs (as in the real run, where they are cached), so ``mlp`` pass-through encoders of
  the same widths stand in for EfficientNet-Lite0 and MiniLM.

Run on a machine with a CUDA GPU (about 2 minutes on an H200)::

    python benchmarks/gpu.py
    python benchmarks/gpu.py --quick --device cpu   # a smoke test of the script

Where the machine's copy of the tree has no (or a stale) ``.git``, pass ``--commit SHA`` so
the records name the code that ran.

Writes benchmarks/results/gpu.{json,md} (``--results-dir`` elsewhere); keep the printed log
beside them (benchmarks/results/gpu.log).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import Batch, Sample
from polymodal.device import autocast
from polymodal.joint.pairs import PairedFeatures
from polymodal.joint.train import ContrastiveStrategy
from polymodal.models.build import build_model
from polymodal.training import Callback, LoopState, Trainer, load_config
from polymodal.training.supervised import SupervisedStrategy

try:
    from benchmarks._common import print_table, record, write_results
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import print_table, record, write_results  # type: ignore[no-redef]

NAME = "gpu"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- data


class SyntheticAVDigits(MultimodalDataset):
    """``n`` in-memory examples of av_digits' shapes: (T,) 8 kHz audio of 0.25-1 s and a
    (3, 28, 28) image (av_digits decodes MNIST to RGB), 10 classes; drawn from ``seed``."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(2000, 8001, (n,), generator=g)
        self.audio = [0.1 * torch.randn(int(t), generator=g) for t in lengths]
        self.image = torch.rand(n, 3, 28, 28, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g).tolist()
        self.schema = Schema(
            (
                ModalitySpec("audio", ModalityKind.AUDIO, shape=(), sample_rate=8000.0),
                ModalitySpec("image", ModalityKind.IMAGE, shape=(3, 28, 28)),
            ),
            TargetSpec("classification", 10, name="digit"),
        )
        self.name = "av_digits"

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Sample:
        return Sample(str(i), {"audio": self.audio[i], "image": self.image[i]}, target=self.y[i])

    def targets(self) -> list[Any]:
        return list(self.y)

    def groups(self) -> list[str]:
        return [str(i) for i in range(len(self))]


def flickr_pairs(images: int, seed: int) -> PairedFeatures:
    """``images`` image feature rows (1280-d, non-negative like pooled EfficientNet
    features) and 5 caption rows (384-d) per image."""
    g = torch.Generator().manual_seed(seed)
    img = torch.relu(torch.randn(images, 1280, generator=g))
    txt = torch.randn(images * 5, 384, generator=g)
    return PairedFeatures("image", "text", img, txt, torch.arange(images * 5) // 5)


# ----------------------------------------------------------------------------- timing


class EpochClock(Callback):
    """Collects nothing itself: the trainer's history rows carry each epoch's training
    seconds; kept to sync the GPU at each epoch end so those seconds include its work."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def on_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any]) -> None:
        _sync(self.device)


def timed_rate(history: list[dict[str, Any]], samples_per_epoch: int) -> float:
    """Samples/s over the epochs after the first."""
    seconds = sum(float(r["seconds"]) for r in history[1:])
    return samples_per_epoch * (len(history) - 1) / seconds


def matmul_rate(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Measured dense bf16 (fp32 on CPU) matmul rate, FLOP/s."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def count_flops(fn: Callable[[], Tensor]) -> int:
    """FLOPs of ``fn()`` plus its backward."""
    with FlopCounterMode(display=False) as counter:
        fn().backward()  # type: ignore[no-untyped-call]
    return int(counter.get_total_flops())


def peak_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- av_digits


def av_config(args: argparse.Namespace, out: str) -> Any:
    return load_config(
        CONFIGS / "av_digits.yaml",
        [
            f"device={args.device}",
            f"precision={args.precision}",
            f"data.batch_size={args.av_batch}",
            f"data.num_workers={args.workers}",
            f"optim.epochs={args.epochs}",
            "patience=null",
            "progress=false",
            f"output_dir={out}",
        ],
    )


def av_polymodal(args: argparse.Namespace, device: torch.device, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = av_config(args, f"{tmp}/run")
        train = SyntheticAVDigits(args.av_steps * args.av_batch, seed)
        val = SyntheticAVDigits(args.av_batch, seed + 1000)
        model = build_model(cfg.model, train.schema, seed=cfg.seed)
        reset_peak(device)
        start = time.perf_counter()
        result = Trainer(
            cfg, SupervisedStrategy(cfg, model, train, val), [EpochClock(device)]
        ).fit()
        wall = time.perf_counter() - start
    samples = args.av_steps * args.av_batch
    return {
        "samples_per_s": timed_rate(result.history, samples),
        "samples_per_s_with_eval": samples * args.epochs / wall,
        "peak_memory_mb": peak_mb(device),
    }


def av_bare(args: argparse.Namespace, device: torch.device, seed: int) -> dict[str, float]:
    """The hand-written loop: all examples collated once onto the GPU, sliced per step."""
    cfg = av_config(args, "unused")
    data = SyntheticAVDigits(args.av_steps * args.av_batch, seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.schema, seed=cfg.seed).to(device)
    full = data.batch(range(len(data))).to(device)
    assert full.target is not None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=0.01)
    bs, n = args.av_batch, len(data)
    reset_peak(device)
    seconds = []
    model.train()
    for epoch in range(args.epochs):
        _sync(device)
        start = time.perf_counter()
        perm_cpu = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        perm = perm_cpu.to(device)
        for s in range(0, n, bs):
            idx = perm[s : s + bs]  # device rows; the ids from the host copy (no wait)
            ids = [full.ids[i] for i in perm_cpu[s : s + bs].tolist()]
            mods = {k: mb.index(idx) for k, mb in full.modalities.items()}
            batch = Batch(mods, full.target[idx], ids)
            with autocast(device, args.precision):
                loss = F.cross_entropy(model(batch).logits.float(), batch.target)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError("the bare loop's loss is not finite")
    return {
        "samples_per_s": n * (args.epochs - 1) / sum(seconds[1:]),
        "peak_memory_mb": peak_mb(device),
    }


def av_flops(args: argparse.Namespace, device: torch.device) -> float:
    """FLOPs per training example of the av_digits model."""
    cfg = av_config(args, "unused")
    data = SyntheticAVDigits(args.av_batch, 0)
    model = build_model(cfg.model, data.schema, seed=0).to(device).train()
    batch = data.batch(range(len(data))).to(device)
    assert batch.target is not None
    target = batch.target

    def step() -> Tensor:
        with autocast(device, args.precision):
            return F.cross_entropy(model(batch).logits.float(), target)

    return count_flops(step) / len(data)


# ----------------------------------------------------------------------------- flickr8k


def flickr_config(args: argparse.Namespace, out: str) -> Any:
    mods = {"image": 1280, "text": 384}
    overrides = [
        f"device={args.device}",
        f"precision={args.precision}",
        f"optim.epochs={args.epochs}",
        f"optim.batch_size={args.flickr_batch}",
        "optim.all_positives=false",
        "patience=null",
        "progress=false",
        f"output_dir={out}",
    ]
    for name, dim in mods.items():
        overrides += [
            f"model.modalities.{name}.spec={{kind: features, shape: [{dim}]}}",
            f"model.modalities.{name}.encoder={{name: mlp, params: {{dim: {dim}}}}}",
        ]
    return load_config(CONFIGS / "flickr8k.yaml", overrides)


def flickr_polymodal(args: argparse.Namespace, device: torch.device, seed: int) -> dict[str, float]:
    from polymodal.joint.model import JointEmbeddingModel

    with tempfile.TemporaryDirectory() as tmp:
        cfg = flickr_config(args, f"{tmp}/run")
        torch.manual_seed(cfg.seed)
        model = JointEmbeddingModel(cfg.model)
        train = {"flickr8k": flickr_pairs(args.flickr_images, seed)}
        val = {"flickr8k": flickr_pairs(args.flickr_val, seed + 1000)}
        strategy = ContrastiveStrategy(cfg, model, train, val)
        reset_peak(device)
        start = time.perf_counter()
        result = Trainer(cfg, strategy, [EpochClock(device)]).fit()
        wall = time.perf_counter() - start
    samples = strategy.steps_per_epoch() * args.flickr_batch
    return {
        "samples_per_s": timed_rate(result.history, samples),
        "samples_per_s_with_eval": samples * args.epochs / wall,
        "peak_memory_mb": peak_mb(device),
    }


def _clip_step(
    model: Any, img: Tensor, txt: Tensor, scale: Tensor, precision: str, device: torch.device
) -> Tensor:
    with autocast(device, precision):
        za = model.project("image", img)
        zo = model.project("text", txt)
        logits = scale.exp() * za.float() @ zo.float().T  # (B, B)
    labels = torch.arange(logits.shape[0], device=device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def flickr_bare(args: argparse.Namespace, device: torch.device, seed: int) -> dict[str, float]:
    """The hand-written CLIP loop over the same projections, one random caption per image."""
    from polymodal.joint.model import JointEmbeddingModel

    cfg = flickr_config(args, "unused")
    torch.manual_seed(cfg.seed)
    model = JointEmbeddingModel(cfg.model).to(device)
    pairs = flickr_pairs(args.flickr_images, seed)
    img, txt = pairs.anchor_features.to(device), pairs.other_features.to(device)
    scale = torch.tensor(math.log(1 / 0.05), device=device, requires_grad=True)
    params = [*model.projections.parameters(), scale]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    n, bs = img.shape[0], args.flickr_batch
    reset_peak(device)
    seconds = []
    model.train()
    for epoch in range(args.epochs):
        _sync(device)
        start = time.perf_counter()
        g = torch.Generator().manual_seed(epoch)
        caption = (torch.arange(n) * 5 + torch.randint(0, 5, (n,), generator=g)).to(device)
        perm = torch.randperm(n, generator=g).to(device)
        for s in range(0, n - 1, bs):
            rows = perm[s : s + bs]
            loss = _clip_step(model, img[rows], txt[caption[rows]], scale, args.precision, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    steps = len(range(0, n - 1, bs))
    return {
        "samples_per_s": steps * bs * (args.epochs - 1) / sum(seconds[1:]),
        "peak_memory_mb": peak_mb(device),
    }


def flickr_flops(args: argparse.Namespace, device: torch.device) -> float:
    from polymodal.joint.model import JointEmbeddingModel

    cfg = flickr_config(args, "unused")
    model = JointEmbeddingModel(cfg.model).to(device).train()
    pairs = flickr_pairs(args.flickr_batch, 0)
    img, txt = pairs.anchor_features.to(device), pairs.other_features[::5].to(device)
    scale = torch.tensor(math.log(20.0), device=device, requires_grad=True)
    flops = count_flops(lambda: _clip_step(model, img, txt, scale, args.precision, device))
    return flops / args.flickr_batch


# ----------------------------------------------------------------------------- main

RUNS: dict[str, tuple[Callable[..., dict[str, float]], Callable[..., dict[str, float]], Any]] = {
    "av_digits": (av_polymodal, av_bare, av_flops),
    "flickr8k": (flickr_polymodal, flickr_bare, flickr_flops),
}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (the first untimed)")
    p.add_argument("--workers", type=int, default=8, help="data loader workers (polymodal)")
    p.add_argument("--av-batch", type=int, default=256)
    p.add_argument("--av-steps", type=int, default=60, help="steps per epoch")
    p.add_argument("--flickr-batch", type=int, default=1024)
    p.add_argument("--flickr-images", type=int, default=6000)
    p.add_argument("--flickr-val", type=int, default=1000, help="validation images")
    p.add_argument("--models", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 round (smoke test)")
    p.add_argument("--commit", default=None, help="stamp to record when the tree has no .git")
    p.add_argument("--results-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.workers = 1, 2, 0
        args.av_batch, args.av_steps, args.flickr_batch = 8, 2, 16
        args.flickr_images, args.flickr_val = 40, 10
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    rate = matmul_rate(device, n=256 if args.quick else 8192)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {gpu}; measured matmul rate {rate / 1e12:.1f} TFLOP/s", flush=True)
    records: list[dict[str, Any]] = []
    for model_name in args.models:
        run_poly, run_bare, flops_fn = RUNS[model_name]
        flops = flops_fn(args, device)
        got: dict[str, list[dict[str, float]]] = {"polymodal": [], "bare": []}
        started = time.perf_counter()
        for r in range(args.rounds):
            got["polymodal"].append(run_poly(args, device, r))
            got["bare"].append(run_bare(args, device, r))
            print(
                f"{model_name} round {r}: polymodal {got['polymodal'][-1]['samples_per_s']:.0f}"
                f"/s, bare {got['bare'][-1]['samples_per_s']:.0f}/s",
                flush=True,
            )
        seconds = time.perf_counter() - started
        ratios = [
            a["samples_per_s"] / b["samples_per_s"]
            for a, b in zip(got["polymodal"], got["bare"], strict=True)
        ]
        common = {
            "n_seeds": args.rounds,
            "seconds": seconds,
            "gpu": gpu,
            "precision": args.precision,
        }
        for method, runs in got.items():
            for metric in ("samples_per_s", "samples_per_s_with_eval", "peak_memory_mb"):
                values = [run[metric] for run in runs if metric in run]
                if not values:
                    continue
                std = statistics.stdev(values) if len(values) > 1 else None
                records.append(
                    record(NAME, model_name, method, metric, statistics.mean(values), std, **common)
                )
            sps = statistics.mean(run["samples_per_s"] for run in runs)
            records.append(record(NAME, model_name, method, "tflops", flops * sps / 1e12, **common))
            records.append(record(NAME, model_name, method, "mfu", flops * sps / rate, **common))
        records.append(
            record(
                NAME,
                model_name,
                "polymodal",
                "ratio_to_bare_loop",
                statistics.mean(ratios),
                statistics.stdev(ratios) if len(ratios) > 1 else None,
                **common,
            )
        )
        records.append(
            record(NAME, model_name, "model", "gflops_per_sample", flops / 1e9, **common)
        )
    records.append(record(NAME, "-", "matmul_bf16", "tflops", rate / 1e12, gpu=gpu))
    if args.commit is not None:
        for rec in records:
            rec["commit"] = args.commit
    print_table(records)
    if not args.quick:
        write_results(NAME, records, results_dir=args.results_dir)
    return records


if __name__ == "__main__":
    main()
