"""Scale, part 1: the source loader vs WebDataset shards, samples/s on every built-in set.

For each data set the first ``--limit`` examples of its train split are written as shards
(:func:`polymodal.data.webshards.write_shards`, ``--shard-size`` per shard) and read back
three ways, all through the library's own :func:`polymodal.inference.data_loader` and
collate, same batch size, one full shuffled epoch per measurement:

* ``loader``: the built-in data set itself (decoding its files), in a seeded
  :class:`~polymodal.training.data.EpochSampler` order, as training reads it;
* ``shards_index``: :class:`~polymodal.data.webshards.ShardDataset` in the same order (what
  ``data.shards`` trains on);
* ``shards_stream``: :class:`~polymodal.data.webshards.ShardStream` with a
  ``--buffer`` shuffle buffer.

Measurements are interleaved (loader, index, stream, loader, ...; ``--repeats`` each) so
all see the same machine load; ``shards_vs_loader`` is each shard reader's samples/s over
the loader's, pairwise within a repeat.  The hook for "1 vs 2 processes" is
:func:`measure_processes`: until the trainer runs several processes it measures the stream
with ``--standin-workers`` DataLoader workers against none, labelled as a stand-in.

    POLYMODAL_DATA=../shared/data python benchmarks/scale.py

Writes ``benchmarks/results/scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, record, write_results
from polymodal.data.datasets import load_dataset
from polymodal.data.webshards import ShardDataset, ShardStream, write_shards
from polymodal.inference import data_loader
from polymodal.training.data import EpochSampler

NAME = "scale"
DATASETS = ("mosi", "av_digits", "flickr8k", "har_phone_watch", "ravdess_speech")
REPO = Path(__file__).resolve().parents[1]
READERS = ("loader", "shards_index", "shards_stream")


def epoch_rate(loader: Any) -> tuple[float, float]:
    """``(samples/s, seconds)`` of one full pass over ``loader``."""
    start = time.perf_counter()
    samples = sum(len(batch) for batch in loader)
    seconds = time.perf_counter() - start
    return samples / seconds, seconds


def measure_processes(
    stream: ShardStream, batch_size: int, workers: int, epoch: int
) -> dict[str, float]:
    """Samples/s of a full epoch of the stream read by ``workers`` parallel readers, after a
    warm-up epoch that starts them (its seconds are ``startup_s``).

    The hook for "1 vs 2 processes": today the readers are persistent DataLoader workers (a
    stand-in, labelled so in the records); once training runs one process per rank,
    measure each rank's ``ShardStream(rank=r, world_size=2)`` here instead.
    """
    stream.set_epoch(epoch)
    loader = stream.loader(batch_size, num_workers=workers, persistent_workers=workers > 0)
    startup_s = epoch_rate(loader)[1]
    rate, seconds = epoch_rate(loader)
    return {"samples_per_s": rate, "startup_s": startup_s, "seconds": seconds}


def run_dataset(name: str, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    full = load_dataset(name, split="train")
    load_s = time.perf_counter() - t0
    source = full.subset(range(min(args.limit, len(full))))
    n = len(source)
    t0 = time.perf_counter()
    index = write_shards(source, folder / name, shard_size=args.shard_size)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    by_index = ShardDataset(folder / name, "train")
    stream = ShardStream(folder / name, "train", shuffle_buffer=args.buffer, seed=0)
    open_s = time.perf_counter() - t0
    bs = args.batch_size

    def loaders(rep: int) -> dict[str, Callable[[], Any]]:
        stream.set_epoch(rep)
        return {
            "loader": lambda: data_loader(source, bs, EpochSampler(n, 0, rep)),
            "shards_index": lambda: data_loader(by_index, bs, EpochSampler(n, 0, rep)),
            "shards_stream": lambda: data_loader(stream, bs),
        }

    rates: dict[str, list[float]] = {r: [] for r in READERS}
    secs: dict[str, float] = dict.fromkeys(READERS, 0.0)
    standin: dict[int, list[dict[str, float]]] = {0: [], args.standin_workers: []}
    for rep in range(args.repeats):
        for reader, make in loaders(rep).items():
            rate, seconds = epoch_rate(make())
            rates[reader].append(rate)
            secs[reader] += seconds
        if args.standin_workers > 0:
            for w in standin:
                standin[w].append(measure_processes(stream, bs, w, rep))

    common = {"batch_size": bs, "n_examples": n, "torch_threads": args.threads}
    mb = sum(s["bytes"] for s in index["shards"]) / 1e6
    records = []
    for reader in READERS:
        vals = rates[reader]
        extra = {"load_s": round(load_s, 2)} if reader == "loader" else {}
        if reader != "loader":
            extra = {"write_s": round(write_s, 2), "open_s": round(open_s, 3), "shard_mb": mb}
        records.append(
            record(
                NAME,
                name,
                reader,
                "samples_per_s",
                statistics.fmean(vals),
                std=statistics.stdev(vals) if len(vals) > 1 else None,
                n_seeds=len(vals),
                seconds=secs[reader],
                **common,
                **extra,
            )
        )
    for reader in READERS[1:]:
        ratios = [s / b for s, b in zip(rates[reader], rates["loader"], strict=True)]
        records.append(
            record(
                NAME,
                name,
                f"{reader}/loader",
                "shards_vs_loader",
                statistics.fmean(ratios),
                std=statistics.stdev(ratios) if len(ratios) > 1 else None,
                n_seeds=len(ratios),
                **common,
            )
        )
    if args.standin_workers > 0:
        w = args.standin_workers
        for k, runs in standin.items():
            vals = [r["samples_per_s"] for r in runs]
            records.append(
                record(
                    NAME,
                    name,
                    f"shards_stream workers={k} (stand-in)",
                    "samples_per_s",
                    statistics.fmean(vals),
                    std=statistics.stdev(vals) if len(vals) > 1 else None,
                    n_seeds=len(vals),
                    seconds=sum(r["seconds"] for r in runs),
                    workers=k,
                    startup_s=round(statistics.fmean(r["startup_s"] for r in runs), 3),
                    **common,
                )
            )
        ratios = [
            b["samples_per_s"] / a["samples_per_s"]
            for a, b in zip(standin[0], standin[w], strict=True)
        ]
        records.append(
            record(
                NAME,
                name,
                f"shards_stream workers={w}/workers=0 (stand-in for {w} processes)",
                "ratio",
                statistics.fmean(ratios),
                std=statistics.stdev(ratios) if len(ratios) > 1 else None,
                n_seeds=len(ratios),
                workers=w,
                **common,
            )
        )
    print(
        f"{name}: loader {statistics.fmean(rates['loader']):.0f}, shards by index "
        f"{statistics.fmean(rates['shards_index']):.0f}, streamed "
        f"{statistics.fmean(rates['shards_stream']):.0f} samples/s (n={n})",
        flush=True,
    )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), metavar="NAME")
    parser.add_argument("--limit", type=int, default=192, help="examples per data set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=48, help="examples per shard")
    parser.add_argument("--buffer", type=int, default=64, help="stream shuffle buffer")
    parser.add_argument("--repeats", type=int, default=3, help="epochs per reader")
    parser.add_argument(
        "--standin-workers",
        type=int,
        default=2,
        help="DataLoader workers standing in for processes (0: skip that measurement)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--results-dir", default=None, help="default benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("POLYMODAL_DATA", str(REPO.parent / "shared" / "data"))

    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="polymodal-scale-") as tmp:
        for name in args.datasets:
            records.extend(run_dataset(name, args, Path(tmp)))
    print_table(records)
    notes = (
        f"The first {args.limit} examples of each train split, batch {args.batch_size}, "
        f"shards of {args.shard_size}; {args.repeats} interleaved full epochs per reader "
        "(std over them), each through polymodal.inference.data_loader in the main process "
        f"with {args.threads} torch thread(s). shards_vs_loader = shard reader samples/s / "
        "loader samples/s, pairwise per epoch. `load_s`: building the data set; `write_s`: "
        "writing its shards; `open_s`: opening both shard readers (sha256 checks, tar header "
        "scan). The workers ratio measures DataLoader workers as a stand-in for processes "
        "until training runs several: persistent workers, timed over a second epoch (the "
        f"first, `startup_s`, starts them). The machine's {os.cpu_count()} cores are shared with other jobs, so "
        "absolute numbers are noisy; compare ratios."
    )
    json_path, md_path = write_results(
        NAME,
        records,
        title="Scale 1: source loader vs shards (samples/s)",
        notes=notes,
        results_dir=args.results_dir,
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
