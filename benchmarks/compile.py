"""``compile: true`` against eager: training samples/s of fusion models, and the compile time.

For each model, ``polymodal train CONFIG`` (``--config``, default ``configs/mosi.yaml``,
made CPU-only, no early stopping, no test split) is launched with ``compile=false`` and
``compile=true`` in alternating rounds (eager, compiled, eager, ...; ``--repeats`` rounds),
never at the same time, with ``--threads`` OpenMP threads (default 1), through the same
launcher as ``benchmarks/scale.py`` (``torch.distributed.run``, ``--processes`` per launch;
2 is DDP with a compiled model).  The models (``--models``):

* ``early``: the config as it is (MOSI's three MLP encoders, early fusion, linear head);
* ``early_no_stats``: the same without the encoders' running standardisation
  (``running_stats=false``), whose masked row selection in training splits the compiled
  graph (``graphs``: the graphs ``torch._dynamo.explain`` finds in one training forward);
* ``bottleneck``: the same encoders, a 2-layer attention-bottleneck transformer fusion
  (``model.fusion.name=bottleneck``, hidden 64, 4 heads).

Measured, from each run's own ``metrics.jsonl`` (:func:`scale.training_rate`):

* ``samples_per_s``: training examples / training seconds of the epochs after the first
  (validation excluded); ``compiled_vs_eager`` is the compiled run's over the eager run's,
  pairwise within a round;
* ``compile_s``: the compiled run's first epoch seconds minus the eager run's (what
  compiling the training step costs, recompiles for the last, shorter batch included),
  ``compile_s_cold`` in the first round (inductor's cache, a fresh folder per benchmark,
  empty) and ``compile_s_warm`` in the later ones (the kernels cached on disk);
  ``launch_s``: the whole launch's wall time (start-up, data, validation, which compiles
  the evaluation graph too).

    POLYMODAL_DATA=../shared/data python benchmarks/compile.py

Writes ``benchmarks/results/compile.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _common import merge_records, previous_records, print_table, record, write_results
from polymodal.training import TrainConfig, load_config
from polymodal.training.data import dataset_for_split
from scale import launch_training, training_rate

NAME = "compile"
REPO = Path(__file__).resolve().parents[1]
STATS_OFF = [f"model.encoders.{m}.params.running_stats=false" for m in ("text", "audio", "video")]
MODELS = {
    "early": [],
    "early_no_stats": STATS_OFF,
    "bottleneck": [
        "model.fusion.name=bottleneck",
        "model.fusion.params={hidden_dim: 64, num_heads: 4, num_layers: 2}",
    ],
}


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def first_epoch_seconds(run_dir: Path) -> float:
    """The first epoch's training seconds (``metrics.jsonl``; validation excluded)."""
    first = (run_dir / "metrics.jsonl").read_text().splitlines()[0]
    return float(json.loads(first)["seconds"])


def graph_count(config: Path, overrides: list[str]) -> int:
    """The graphs ``torch._dynamo.explain`` splits one training forward of the model into
    (1: no graph break)."""
    import torch._dynamo

    from polymodal.training.tasks import build_strategy

    strategy = build_strategy(load_config(config, overrides))
    strategy.setup(torch.device("cpu"))
    batch = next(iter(strategy.batches(0, 0)))
    explained = torch._dynamo.explain(strategy.model.train())(batch)
    torch._dynamo.reset()
    return int(explained.graph_count)


def run_model(model: str, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Eager and compiled launches of one model, interleaved; their records."""
    config = Path(args.config)
    overrides = [
        "device=cpu",
        f"optim.epochs={args.epochs}",
        "patience=null",
        "progress=false",
        "data.test_split=null",
        *MODELS[model],
    ]
    cfg = load_config(config, overrides)
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"--config must be a supervised run (task: supervised); got {config}.")
    n_train = len(dataset_for_split(cfg.data, cfg.seed, "train"))
    bs = cfg.data.batch_size
    graphs = graph_count(config, overrides)
    found: dict[str, dict[str, list[float]]] = {
        m: {"rate": [], "first": [], "launch": [], "seconds": []} for m in ("eager", "compiled")
    }
    for rep in range(args.repeats):
        for method, flag in (("eager", "false"), ("compiled", "true")):
            run_dir = folder / f"{model}-{method}-{rep}"
            launch = launch_training(
                config, [*overrides, f"compile={flag}"], args.processes, args.threads, run_dir
            )
            rate, seconds = training_rate(run_dir, n_train, bs)
            got = found[method]
            got["rate"].append(rate)
            got["seconds"].append(seconds)
            got["launch"].append(launch)
            got["first"].append(first_epoch_seconds(run_dir))
            print(
                f"  {model} round {rep}: {method}: {rate:.0f} samples/s, first epoch "
                f"{got['first'][-1]:.1f} s, launch {launch:.1f} s",
                flush=True,
            )
    dataset = cfg.data.dataset or cfg.name
    common = {
        "model": model,
        "batch_size": bs,
        "n_examples": n_train,
        "epochs": args.epochs,
        "processes": args.processes,
        "threads": args.threads,
        "graphs": graphs,
    }
    records = []
    for method, got in found.items():
        records.append(
            record(
                NAME,
                dataset,
                f"{model} {method}",
                "samples_per_s",
                statistics.fmean(got["rate"]),
                std=_std(got["rate"]),
                n_seeds=args.repeats,
                seconds=sum(got["seconds"]),
                launch_s=round(statistics.fmean(got["launch"]), 2),
                first_epoch_s=round(statistics.fmean(got["first"]), 2),
                **common,
            )
        )
    eager, compiled = found["eager"], found["compiled"]
    ratios = [c / e for c, e in zip(compiled["rate"], eager["rate"], strict=True)]
    extra = [c - e for c, e in zip(compiled["first"], eager["first"], strict=True)]
    records.append(
        record(
            NAME,
            dataset,
            f"{model} compiled/eager",
            "ratio",
            statistics.fmean(ratios),
            std=_std(ratios),
            n_seeds=args.repeats,
            compile_s=round(statistics.fmean(extra), 2),
            compile_s_cold=round(extra[0], 2),
            compile_s_warm=round(statistics.fmean(extra[1:]), 2) if len(extra) > 1 else None,
            **common,
        )
    )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "mosi.yaml"))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=4, help="the first one is skipped")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of eager + compiled")
    parser.add_argument("--processes", type=int, default=1, help="2: DDP, compiled model")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    parser.add_argument("--results-dir", default=None, help="default benchmarks/results")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch (compiling) is skipped")
    os.environ.setdefault("POLYMODAL_DATA", str(REPO.parent / "shared" / "data"))

    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="polymodal-compile-") as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")  # cold at first
        for model in args.models:
            records.extend(run_model(model, args, Path(tmp)))
    records = merge_records(
        previous_records(NAME, args.results_dir), records, key=("dataset", "method", "processes")
    )
    print_table(records)
    notes = (
        f"`polymodal train {Path(args.config).name}` with device=cpu, "
        f"optim.epochs={args.epochs}, no early stopping, no test split, compile=false vs "
        f"compile=true (torch.compile, inductor, C++ kernels), launched one after the other "
        f"in {args.repeats} alternating rounds (std over them); `processes` per launch "
        "(torch.distributed.run; 2 = DDP), `threads` OpenMP threads each. samples_per_s: "
        "training examples / training seconds (metrics.jsonl, validation excluded) of the "
        "epochs after the first. ratio: compiled samples/s / eager samples/s, pairwise per "
        "round. compile_s: the compiled run's first-epoch seconds minus the eager run's "
        "(compiling the training step): compile_s_cold in round 1 (an empty inductor cache), "
        "compile_s_warm in the later rounds (kernels cached on disk); first_epoch_s, "
        "launch_s: means per launch (a compiled launch also compiles the evaluation graph). "
        "graphs: the graphs torch._dynamo.explain splits one training forward into (1: no "
        "graph break); early_no_stats: the encoders without running_stats. The machine's cores are "
        "shared with other jobs: compare ratios."
    )
    json_path, md_path = write_results(
        NAME,
        records,
        title="torch.compile: training samples/s, compiled vs eager",
        notes=notes,
        results_dir=args.results_dir,
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
