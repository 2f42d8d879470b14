"""Scale: the source loader vs WebDataset shards, and training on 1 vs 2 processes.

**Part ``loader``**: for each data set the first ``--limit`` examples of its train split are
written as shards (:func:`polymodal.data.webshards.write_shards`, ``--shard-size`` per shard)
and read back three ways, all through the library's own
:func:`polymodal.inference.data_loader` and collate, same batch size, one full shuffled epoch
per measurement:

* ``loader``: the built-in data set itself (decoding its files), in a seeded
  :class:`~polymodal.training.data.EpochSampler` order, as training reads it;
* ``shards_index``: :class:`~polymodal.data.webshards.ShardDataset` in the same order (what
  ``data.shards`` trains on);
* ``shards_stream``: :class:`~polymodal.data.webshards.ShardStream` with a
  ``--buffer`` shuffle buffer.

Measurements are interleaved (loader, index, stream, loader, ...; ``--repeats`` each) so
all see the same machine load; ``shards_vs_loader`` is each shard reader's samples/s over
the loader's, pairwise within a repeat.

**Part ``processes``**: ``--train-config`` (default ``configs/har_phone_watch.yaml``) trained
by ``polymodal train`` under ``python -m torch.distributed.run --standalone
--nproc_per_node N`` on the CPU (``device=cpu``, ``--process-epochs`` epochs, no early
stopping, no test split), the same global batch and steps in every launch:

* ``train nproc=1 threads=1``: one process, ``OMP_NUM_THREADS=1``;
* ``train nproc=2 threads=1``: two data-parallel processes (gloo), one thread each;
* ``train nproc=1 threads=2``: one process with two threads, the fair single-process
  alternative on two cores;
* ``train nproc=1 threads=1 shards``: the first launch, reading ``data.shards`` written
  from the same train split instead of the source data set.

Launches are interleaved (``--process-repeats`` rounds of the ``--launches``).  Training
samples/s come from the run's own ``metrics.jsonl``: each epoch's ``seconds`` (training
only, validation excluded) and its examples, the first epoch skipped (warm-up);
``launch_s`` is the wall time of the whole launch (start-up, data loading and validation
included).
``speedup_2_processes`` is the two processes' samples/s over each single-process run's,
and ``shards_vs_loader`` the shards run's over the loader's, pairwise within a round.

    POLYMODAL_DATA=../shared/data python benchmarks/scale.py [--parts processes]

Writes ``benchmarks/results/scale.{json,md}``; a run of some ``--parts`` keeps the other
part's records from the previous file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import merge_records, previous_records, print_table, record, write_results
from polymodal.data.datasets import load_dataset
from polymodal.data.webshards import ShardDataset, ShardStream, write_shards
from polymodal.inference import data_loader
from polymodal.training import TrainConfig, load_config
from polymodal.training.data import EpochSampler, dataset_for_split, split_loader

NAME = "scale"
DATASETS = ("mosi", "av_digits", "flickr8k", "har_phone_watch", "ravdess_speech")
REPO = Path(__file__).resolve().parents[1]
READERS = ("loader", "shards_index", "shards_stream")
PARTS = ("loader", "processes")
#: The training launches of part ``processes`` by ``--launches`` name: (method, processes,
#: threads per process, whether it reads ``data.shards``).
LAUNCHES: dict[str, tuple[str, int, int, bool]] = {
    "1": ("train nproc=1 threads=1", 1, 1, False),
    "2": ("train nproc=2 threads=1", 2, 1, False),
    "1x2": ("train nproc=1 threads=2", 1, 2, False),
    "shards": ("train nproc=1 threads=1 shards", 1, 1, True),
}
#: The ratios of part ``processes``: (metric, launch, over launch), when both were run.
RATIOS = (
    ("speedup_2_processes", "2", "1"),
    ("speedup_2_processes", "2", "1x2"),
    ("shards_vs_loader", "shards", "1"),
)


def epoch_rate(loader: Any) -> tuple[float, float]:
    """``(samples/s, seconds)`` of one full pass over ``loader``."""
    start = time.perf_counter()
    samples = sum(len(batch) for batch in loader)
    seconds = time.perf_counter() - start
    return samples / seconds, seconds


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
    for rep in range(args.repeats):
        for reader, make in loaders(rep).items():
            rate, seconds = epoch_rate(make())
            rates[reader].append(rate)
            secs[reader] += seconds

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
                std=_std(vals),
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
                std=_std(ratios),
                n_seeds=len(ratios),
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


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def launch_training(
    config: Path, overrides: list[str], processes: int, threads: int, run_dir: Path
) -> float:
    """Wall seconds of ``polymodal train config overrides... output_dir=run_dir`` under
    ``python -m torch.distributed.run --standalone --nproc_per_node processes``, each
    process with ``threads`` OpenMP/MKL threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    program = ["-m", "polymodal", "train", str(config), *overrides, f"output_dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *launcher, *program], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"polymodal train on {processes} process(es) failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return seconds


def training_rate(run_dir: Path, n_train: int, batch_size: int) -> tuple[float, float]:
    """``(samples/s, seconds)`` of the training epochs after the first, from the run's
    ``metrics.jsonl``: each epoch's ``seconds`` (validation excluded) and examples (its
    steps times ``batch_size``, at most the ``n_train`` examples of a full epoch)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if len(rows) < 2:
        raise ValueError(
            f"{run_dir} logged {len(rows)} epoch(s); the first is skipped as warm-up, so "
            "--process-epochs must be at least 2."
        )
    samples, seconds = 0, 0.0
    for before, row in itertools.pairwise(rows):
        samples += min((row["step"] - before["step"]) * batch_size, n_train)
        seconds += row["seconds"]
    return samples / seconds, seconds


def run_processes(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Part ``processes``: the training launches, interleaved, and their ratios."""
    config = Path(args.train_config)
    overrides = [
        "device=cpu",
        f"optim.epochs={args.process_epochs}",
        "optim.max_steps=null",
        "patience=null",
        "progress=false",
        "data.test_split=null",
        *args.train_set,
    ]
    cfg = load_config(config, overrides)
    if not isinstance(cfg, TrainConfig):
        raise ValueError(
            f"--train-config must be a supervised run (task: supervised); {config} is "
            f"{type(cfg).__name__}. Pass e.g. configs/har_phone_watch.yaml."
        )
    t0 = time.perf_counter()
    n_train = len(dataset_for_split(cfg.data, cfg.seed, "train"))
    from_shards: list[str] = []
    if "shards" in args.launches:
        shards = folder / "train-shards"
        split = cfg.data.train_split  # None: every row of a manifest, the shards' "all"
        source = split_loader(cfg.data)(split)
        write_shards(source, shards, split=split or "all", shard_size=1000)
        from_shards = ["data.dataset=null", "data.manifest=null", "data.schema=null"]
        from_shards += ["data.options={}", f"data.shards={shards}"]
    launches = {  # method: (overrides, processes, threads)
        method: ([*overrides, *(from_shards if on_shards else [])], p, t)
        for key, (method, p, t, on_shards) in LAUNCHES.items()
        if key in args.launches
    }
    print(f"processes: {n_train} training examples ({time.perf_counter() - t0:.1f} s)", flush=True)
    bs = cfg.data.batch_size
    rates: dict[str, list[float]] = {m: [] for m in launches}
    walls: dict[str, list[float]] = {m: [] for m in launches}
    secs: dict[str, float] = dict.fromkeys(launches, 0.0)
    for rep in range(args.process_repeats):
        for i, (method, (ov, processes, threads)) in enumerate(launches.items()):
            run_dir = folder / f"run-{rep}-{i}"
            walls[method].append(launch_training(config, ov, processes, threads, run_dir))
            rate, seconds = training_rate(run_dir, n_train, bs)
            rates[method].append(rate)
            secs[method] += seconds
            wall = walls[method][-1]
            print(f"  round {rep}: {method}: {rate:.0f} samples/s, launch {wall:.1f} s", flush=True)

    dataset = cfg.data.dataset or cfg.name
    common = {
        "batch_size": bs,
        "n_examples": n_train,
        "epochs": args.process_epochs,
        "config": config.name,
    }
    records = []
    for method, (_, processes, threads) in launches.items():
        records.append(
            record(
                NAME,
                dataset,
                method,
                "samples_per_s",
                statistics.fmean(rates[method]),
                std=_std(rates[method]),
                n_seeds=len(rates[method]),
                seconds=secs[method],
                processes=processes,
                threads=threads,
                launch_s=round(statistics.fmean(walls[method]), 2),
                **common,
            )
        )

    def ratio(metric: str, method: str, over: str) -> dict[str, Any]:
        pairs = list(zip(rates[method], rates[over], strict=True))
        values = [a / b for a, b in pairs]
        launch = [b / a for a, b in zip(walls[method], walls[over], strict=True)]
        return record(
            NAME,
            dataset,
            f"{method.removeprefix('train ')}/{over.removeprefix('train ')}",
            metric,
            statistics.fmean(values),
            std=_std(values),
            n_seeds=len(values),
            launch_ratio=round(statistics.fmean(launch), 3),
            **common,
        )

    for metric, key, over in RATIOS:
        if key in args.launches and over in args.launches:
            records.append(ratio(metric, LAUNCHES[key][0], LAUNCHES[over][0]))
    return records


def part_of(method: str) -> str | None:
    """Which part wrote a record of ``method`` (``None``: neither, e.g. an older version)."""
    if method in READERS or method in {f"{r}/loader" for r in READERS[1:]}:
        return "loader"
    return "processes" if method.startswith(("train ", "nproc=")) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), metavar="NAME")
    parser.add_argument("--limit", type=int, default=192, help="examples per data set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=48, help="examples per shard")
    parser.add_argument("--buffer", type=int, default=64, help="stream shuffle buffer")
    parser.add_argument("--repeats", type=int, default=3, help="epochs per reader")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (loader part)")
    parser.add_argument("--train-config", default=str(REPO / "configs" / "har_phone_watch.yaml"))
    parser.add_argument(
        "--train-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="further overrides of every training launch",
    )
    parser.add_argument("--process-epochs", type=int, default=3, help="first one skipped")
    parser.add_argument("--process-repeats", type=int, default=3, help="rounds of launches")
    parser.add_argument(
        "--launches",
        nargs="+",
        choices=list(LAUNCHES),
        default=list(LAUNCHES),
        help="1: one process, one thread; 2: two processes, one thread each; 1x2: one "
        "process, two threads; shards: as 1, on shards of the train split",
    )
    parser.add_argument("--results-dir", default=None, help="default benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("POLYMODAL_DATA", str(REPO.parent / "shared" / "data"))

    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="polymodal-scale-") as tmp:
        if "loader" in args.parts:
            for name in args.datasets:
                records.extend(run_dataset(name, args, Path(tmp)))
        if "processes" in args.parts:
            records.extend(run_processes(args, Path(tmp)))
    kept = [
        r
        for r in previous_records(NAME, args.results_dir)
        if part_of(r["method"]) not in (*args.parts, None)
    ]
    records = merge_records(kept, records)
    print_table(records)
    notes = (
        f"Part loader: the first {args.limit} examples of each train split, batch "
        f"{args.batch_size}, shards of {args.shard_size}; {args.repeats} interleaved full "
        "epochs per reader (std over them), each through polymodal.inference.data_loader in "
        f"the main process with {args.threads} torch thread(s). shards_vs_loader = shard "
        "reader samples/s / loader samples/s, pairwise per epoch. `load_s`: building the "
        "data set; `write_s`: writing its shards; `open_s`: opening both shard readers "
        "(sha256 checks, tar header scan). Part processes: `polymodal train "
        f"{Path(args.train_config).name}` under `python -m torch.distributed.run "
        "--standalone --nproc_per_node N` with device=cpu, "
        f"optim.epochs={args.process_epochs}, no early stopping, no test split"
        f"{''.join(' ' + x for x in args.train_set)}; `threads`: OMP_NUM_THREADS per process; "
        f"{args.process_repeats} interleaved rounds (std over them). samples_per_s: "
        "training examples / training seconds (metrics.jsonl, validation excluded) of the "
        "epochs after the first; `seconds`: those seconds summed; `launch_s`: wall time of "
        "a whole launch (start-up, data loading, validation). speedup_2_processes: 2 "
        "processes' samples/s over the named single-process run's, pairwise per round "
        "(`launch_ratio`: the same for launch_s). The machine's "
        f"{os.cpu_count()} cores are shared with other jobs, so absolute numbers are "
        "noisy; compare ratios."
    )
    json_path, md_path = write_results(
        NAME,
        records,
        title="Scale: source loader vs shards, 1 vs 2 training processes (samples/s)",
        notes=notes,
        results_dir=args.results_dir,
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
