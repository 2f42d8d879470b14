"""Decoding throughput of each built-in data set through its DataLoader, 0 vs 2 workers.

For every data set (train split, batch 32, shuffled) the script times batches through
``dataset.loader(num_workers=0)`` and ``dataset.loader(num_workers=2)`` alternately
(0, 2, 0, 2, ... ``--repeats`` times each, ``--budget`` seconds per measurement), so both
settings see the same machine load; the ratio of the two is recorded next to them.
Each measurement starts after one warm-up batch, so worker start-up (reported separately
as ``startup_s``) is not in samples/s.  The main process uses ``--threads`` torch threads
(default 1, as each worker does): on a busy machine more threads oversubscribe the cores
and slow the small per-example tensor ops of decoding several-fold.

    POLYMODAL_DATA=../shared/data python benchmarks/data_throughput.py

``POLYMODAL_DATA`` defaults to ``../shared/data`` next to the repository.  Writes
``benchmarks/results/data_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, record, write_results
from polymodal.data.datasets import load_dataset

NAME = "data_throughput"
DATASETS = ("mosi", "av_digits", "flickr8k", "har_phone_watch")
REPO = Path(__file__).resolve().parents[1]


def measure(
    dataset: Any, workers: int, batch_size: int, budget: float, seed: int
) -> dict[str, float]:
    """Samples/s over ``budget`` seconds of batches (after one warm-up batch)."""
    t0 = time.perf_counter()
    loader = dataset.loader(batch_size=batch_size, shuffle=True, num_workers=workers, seed=seed)
    it = iter(loader)
    next(it)  # warm-up: worker start-up and the first batch
    startup = time.perf_counter() - t0
    samples = batches = 0
    start = time.perf_counter()
    while True:
        try:
            batch = next(it)
        except StopIteration:  # a new epoch (persistent workers are reused)
            it = iter(loader)
            continue
        samples += len(batch)
        batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget and batches >= 3:
            break
    del it, loader
    gc.collect()
    return {
        "samples_per_s": samples / elapsed,
        "batches": batches,
        "startup_s": startup,
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), metavar="NAME")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="compared against 0 workers")
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per setting")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the main process (DataLoader workers always use 1); more than "
        "1 on a busy machine oversubscribes the cores and slows small decode ops down",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    os.environ.setdefault("POLYMODAL_DATA", str(REPO.parent / "shared" / "data"))
    records: list[dict[str, Any]] = []
    for name in args.datasets:
        t_load = time.perf_counter()
        ds = load_dataset(name, split="train")
        load_s = time.perf_counter() - t_load
        runs: dict[int, list[dict[str, float]]] = {0: [], args.workers: []}
        t_all = time.perf_counter()
        for rep in range(args.repeats):
            for w in (0, args.workers):  # interleaved: both settings see the same load
                runs[w].append(measure(ds, w, args.batch_size, args.budget, seed=rep))
        seconds = time.perf_counter() - t_all
        means = {}
        for w, rs in runs.items():
            vals = [r["samples_per_s"] for r in rs]
            means[w] = statistics.fmean(vals)
            records.append(
                record(
                    NAME,
                    name,
                    f"workers={w}",
                    "samples_per_s",
                    means[w],
                    std=statistics.stdev(vals) if len(vals) > 1 else None,
                    n_seeds=len(vals),
                    seconds=sum(r["seconds"] for r in rs),
                    workers=w,
                    batch_size=args.batch_size,
                    batches=int(sum(r["batches"] for r in rs)),
                    startup_s=round(statistics.fmean(r["startup_s"] for r in rs), 3),
                    load_s=round(load_s, 3),
                    n_examples=len(ds),
                    torch_threads=args.threads,
                )
            )
        ratios = [
            b["samples_per_s"] / a["samples_per_s"]
            for a, b in zip(runs[0], runs[args.workers], strict=True)
        ]
        records.append(
            record(
                NAME,
                name,
                f"workers={args.workers}/workers=0",
                "ratio",
                statistics.fmean(ratios),
                std=statistics.stdev(ratios) if len(ratios) > 1 else None,
                n_seeds=len(ratios),
                seconds=seconds,
                workers=args.workers,
                batch_size=args.batch_size,
            )
        )
        print(
            f"{name}: {means[0]:.0f} samples/s (0 workers), {means[args.workers]:.0f} "
            f"({args.workers} workers), ratio {statistics.fmean(ratios):.2f}",
            flush=True,
        )
    print_table(records)
    notes = (
        f"Train split, batch {args.batch_size}, shuffled; {args.repeats} interleaved "
        f"measurements of {args.budget:g} s per setting (std over them); samples/s excludes "
        "the warm-up batch (worker start-up is `startup_s`). The main process runs "
        f"{args.threads} torch thread(s) (`--threads`); each worker runs 1. ratio = samples/s with "
        f"{args.workers} workers / with 0, measured pairwise in the same run. The machine's "
        f"{os.cpu_count()} cores are shared with other jobs, so absolute numbers vary."
    )
    json_path, md_path = write_results(
        NAME, records, title="Data loading throughput (samples/s)", notes=notes
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
