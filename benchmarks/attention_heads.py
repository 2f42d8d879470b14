"""CPU attention by head size: polymodal's ``attend`` against the plain fused kernel.

PyTorch's fused CPU attention (float32, no attention dropout) is vectorised over the head
size.  :func:`polymodal.layers.transformer.attend` zero-pads heads of some sizes (the rule
is :func:`~polymodal.layers.transformer.cpu_head_dim`) and cuts the padding off again; the
result is the same attention.  This benchmark times one forward + backward of
``F.scaled_dot_product_attention`` as is and of ``attend``, side by side in alternating
rounds (so machine noise hits both), for every head size of ``--head-dims`` at MulT's MOSI
shapes (queries 500, keys 375, 6 heads, batch 16, a key padding mask), one thread by
default, and reports the speed ratio ``attend_vs_sdpa`` (> 1: ``attend`` is faster; 1.0
where the rule leaves the size alone, both sides then run the same call).

    python benchmarks/attention_heads.py                  # about 2 minutes on 2 cores
    python benchmarks/attention_heads.py --head-dims 5 10 30 --rounds 7
    python benchmarks/attention_heads.py --pad-multiple 8 --results-dir /tmp/r
        # another padding rule, to compare (the shipped one is the default)
    ATEN_CPU_CAPABILITY=avx2 python benchmarks/attention_heads.py   # AVX2 kernels

Writes benchmarks/results/attention_heads.{json,md}.
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

NAME = "attention_heads"
DEFAULT_DIMS = (4, 5, 6, 8, 10, 12, 15, 16, 20, 24, 30, 32, 40, 48, 64)


def _step(fn: Callable[[], Tensor]) -> float:
    """Seconds of one forward + backward of ``fn``."""
    start = time.perf_counter()
    fn().sum().backward()
    return time.perf_counter() - start


def measure(
    head_dim: int, batch: int, heads: int, lq: int, lk: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds per forward + backward of plain SDPA and of ``attend``, ``rounds`` each."""
    from polymodal.layers.transformer import attend

    g = torch.Generator().manual_seed(head_dim)
    q = torch.randn(batch, heads, lq, head_dim, generator=g, requires_grad=True)
    k = torch.randn(batch, heads, lk, head_dim, generator=g, requires_grad=True)
    v = torch.randn(batch, heads, lk, head_dim, generator=g, requires_grad=True)
    mask = torch.ones(batch, 1, 1, lk, dtype=torch.bool)
    mask[: batch // 2, ..., lk - lk // 4 :] = False  # padded keys in half the rows

    def plain() -> Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def ours() -> Tensor:
        return attend(q, k, v, mask)

    ref, got = plain(), ours()
    if not torch.allclose(ref, got, atol=1e-5):  # the same attention, or no timing at all
        raise SystemExit(
            f"head_dim={head_dim}: attend differs from SDPA by {(ref - got).abs().max()}"
        )
    _step(plain), _step(ours)  # warm-up
    a, b = [], []
    for _ in range(rounds):
        a.append(_step(plain))
        b.append(_step(ours))
    return a, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--head-dims", type=int, nargs="+", default=list(DEFAULT_DIMS))
    ap.add_argument("--rounds", type=int, default=5, help="alternating timed steps per side")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--keys", type=int, default=375)
    ap.add_argument(
        "--pad-multiple",
        type=int,
        default=None,
        help="evaluate another rule: pad every head size to the next multiple of this",
    )
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import polymodal.layers.transformer as layers

    rule = f"max(head_dim, {layers.CPU_MIN_HEAD_DIM})"
    if args.pad_multiple is not None:
        m = args.pad_multiple
        layers.cpu_head_dim = lambda h: -(-h // m) * m  # what attend() looks up
        rule = f"next multiple of {m}"
    cpu_head_dim = layers.cpu_head_dim

    records = []
    shape = dict(
        batch_size=args.batch,
        heads=args.heads,
        queries=args.queries,
        keys=args.keys,
        threads=args.threads,
        cpu=torch.backends.cpu.get_cpu_capability(),
        rule=rule,
    )
    for dh in args.head_dims:
        started = time.perf_counter()
        plain, ours = measure(dh, args.batch, args.heads, args.queries, args.keys, args.rounds)
        seconds = time.perf_counter() - started
        extra = dict(shape, head_dim=dh, padded_to=cpu_head_dim(dh))
        ratios = [p / o for p, o in zip(plain, ours, strict=True)]
        records += [
            seed_record(NAME, "synthetic", "sdpa", "seconds_per_step", plain, seconds, **extra),
            seed_record(NAME, "synthetic", "attend", "seconds_per_step", ours, seconds, **extra),
            seed_record(NAME, "synthetic", "attend_vs_sdpa", "ratio", ratios, seconds, **extra),
        ]
        print(
            f"head_dim {dh:3d} -> {cpu_head_dim(dh):3d}: sdpa {statistics.median(plain):.3f} s, "
            f"attend {statistics.median(ours):.3f} s, ratio {statistics.mean(ratios):.2f}",
            flush=True,
        )
    print_table(records)
    write_results(
        NAME,
        records,
        title="CPU attention by head size: attend (padded where faster) vs plain SDPA",
        notes=(
            "One forward + backward, float32, alternating rounds; `std` and `n_seeds` are "
            "over rounds. `ratio` > 1: attend is faster."
        ),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
