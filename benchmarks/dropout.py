"""CPU dropout: polymodal's ``dropout`` against ``F.dropout``, forward + backward.

:func:`polymodal.layers.dropout.dropout` draws a CPU mask from 16-bit slices of 64-bit random
integers instead of ``bernoulli_``.  This benchmark times one forward + backward of each on
the same float32 tensor, side by side in alternating rounds (so machine noise hits both),
for the activation shapes of MulT at MOSI's unaligned lengths (batch 32, d = 30, MLP hidden
120; the largest is the video MLP's 32 x 500 x 120) and a small one, at ``--p`` rates, and
reports the speed ratio ``dropout_vs_f_dropout`` (> 1: polymodal's is faster) with the kept
fraction of each side (``kept_fraction``; both should be 1 - p).

    python benchmarks/dropout.py            # about 1 minute on 2 cores
    python benchmarks/dropout.py --threads 1 --rounds 20

Writes benchmarks/results/dropout.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, seed_record, write_results

NAME = "dropout"
SHAPES = ((32, 500, 120), (32, 375, 30), (32, 50, 30), (32, 30))


def _step(fn: Callable[[Tensor, float], Tensor], x: Tensor, grad: Tensor, p: float) -> float:
    """Seconds of one forward + backward of ``fn(x, p)``."""
    start = time.perf_counter()
    fn(x, p).backward(grad)
    return time.perf_counter() - start


def torch_dropout(x: Tensor, p: float) -> Tensor:
    return F.dropout(x, p, training=True)


def measure(
    shape: tuple[int, ...], p: float, rounds: int
) -> tuple[list[float], list[float], float, float]:
    """Seconds per step of ``F.dropout`` and of polymodal's, and each one's kept fraction."""
    from polymodal.layers.dropout import dropout

    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, requires_grad=True)
    grad = torch.randn(shape, generator=g)
    kept_torch = (torch_dropout(x, p) != 0).double().mean().item()
    kept_ours = (dropout(x, p) != 0).double().mean().item()
    for fn in (torch_dropout, dropout):  # warm-up
        _step(fn, x, grad, p)
    a, b = [], []
    for _ in range(rounds):
        a.append(_step(torch_dropout, x, grad, p))
        b.append(_step(dropout, x, grad, p))
    return a, b, kept_torch, kept_ours


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--p", type=float, nargs="+", default=[0.1, 0.2, 0.5])
    ap.add_argument("--rounds", type=int, default=15, help="alternating timed steps per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    records = []
    for shape in SHAPES:
        for p in args.p:
            started = time.perf_counter()
            plain, ours, kept_plain, kept_ours = measure(shape, p, args.rounds)
            seconds = time.perf_counter() - started
            extra = dict(shape="x".join(map(str, shape)), p=p, threads=args.threads)
            ratios = [a / b for a, b in zip(plain, ours, strict=True)]
            records += [
                seed_record(
                    NAME, "synthetic", "f_dropout", "seconds_per_step", plain, seconds, **extra
                ),
                seed_record(
                    NAME, "synthetic", "dropout", "seconds_per_step", ours, seconds, **extra
                ),
                seed_record(
                    NAME, "synthetic", "dropout_vs_f_dropout", "ratio", ratios, seconds, **extra
                ),
                seed_record(
                    NAME, "synthetic", "f_dropout", "kept_fraction", [kept_plain], seconds, **extra
                ),
                seed_record(
                    NAME, "synthetic", "dropout", "kept_fraction", [kept_ours], seconds, **extra
                ),
            ]
            print(
                f"{extra['shape']:>12} p={p}: F.dropout {statistics.median(plain) * 1e3:.2f} ms, "
                f"polymodal {statistics.median(ours) * 1e3:.2f} ms, "
                f"ratio {statistics.mean(ratios):.2f}",
                flush=True,
            )
    print_table(records)
    write_results(
        NAME,
        records,
        title="CPU dropout: polymodal's dropout vs F.dropout (forward + backward)",
        notes=(
            "float32, alternating rounds; `std` and `n_seeds` are over rounds. `ratio` > 1: "
            "polymodal's dropout is faster. kept_fraction: the share of elements one call kept."
        ),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
