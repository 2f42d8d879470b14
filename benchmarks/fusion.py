"""Fusion benchmark: every registered fusion on three real data sets, side by side.

For mosi (transcript + audio), av_digits (audio + image) and har_phone_watch (phone +
watch), trains each fusion strategy with several seeds through the same trainer and
reports, per data set and fusion:

* the test metrics (``accuracy``, ``macro_f1``): mean and std over seeds, the test split
  read once per run with the weights that validation chose (validation is carved from
  train by video, speaker or subject, never from test);
* ``params``: trainable parameters of the whole model and ``fusion_params`` of the fusion
  module alone;
* ``seconds_per_epoch``: training wall time per epoch (including the epoch's validation);
* ``latency_ms``: inference latency per example at batch size 1 (median over test
  examples, eval mode, whole model: encoders + fusion + head), measured while the other
  worker process trains, so read it as relative across fusions.

Single-modality baselines (the same encoders, ``early`` fusion over one modality) run too,
so each fusion can be compared with the best single modality.  Writes
``benchmarks/results/fusion.{json,md}`` and ``fusion.png`` (test accuracy against inference
latency, a point per fusion per data set).

Sizes are chosen so that the default run (3 data sets x 13 methods x 5 seeds = 195
training runs, two worker processes of one thread each) finishes in under 45 minutes on 2
CPU cores (measured: 74 min of worker CPU time, i.e. about 37 min on 2 free cores): every
fusion is built at width 64 (hidden_dim 32 for the attention-based ones), mosi trains for at
most 12 epochs over frozen MiniLM transcript embeddings (computed once per process and
cached), av_digits uses two MNIST images per recording and 4 epochs of small CNNs,
har_phone_watch at most 10 epochs of 1-D CNNs on 25 Hz windows.  Early stopping on
validation (patience 3, 2 for av_digits) cuts most runs short.  Finished runs are logged
to ``fusion_runs.jsonl`` with a hash of their config: a second invocation reuses them
(``--fresh`` starts over), so an interrupted benchmark resumes.

    POLYMODAL_DATA=../shared/data python benchmarks/fusion.py                # everything
    POLYMODAL_DATA=../shared/data python benchmarks/fusion.py --datasets har_phone_watch \\
        --fusions early mult --seeds 2                                    # a slice
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import merge_records, previous_records, print_table, seed_record, write_results
from polymodal.data.collate import collate
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.datasets import load_dataset
from polymodal.fusion.base import FUSIONS
from polymodal.models.build import register_components
from polymodal.training import TrainConfig, Trainer, load_config
from polymodal.training.tasks import build_strategy

REPO = Path(__file__).resolve().parents[1]

# Hyper-parameters of each fusion: comparable widths (hidden_dim 64; 32 for the attention-based
# ones); the data set supplies the dropout.  Decision-level fusions (late, hybrid) have no
# separate head.
FUSION_PARAMS: dict[str, dict[str, Any]] = {
    "early": {"hidden_dim": 64},
    "late": {"combine": "mean"},
    "hybrid": {"hidden_dim": 64},
    "tensor": {"proj_dim": 8, "hidden_dim": 64},
    "lowrank": {"rank": 4, "hidden_dim": 64},
    "attention": {"hidden_dim": 64, "attention_dim": 32},
    "gmu": {"hidden_dim": 64},
    "mult": {"hidden_dim": 32, "num_heads": 4, "num_layers": 2},
    "coattention": {"hidden_dim": 32, "num_heads": 4, "num_layers": 1},
    "bottleneck": {"hidden_dim": 32, "num_heads": 4, "num_layers": 2, "num_bottlenecks": 4},
    "graph": {"hidden_dim": 64, "num_heads": 4, "num_layers": 2},
}
#: Sequence fusions with ``attn_dropout`` (default 0 since it was split from ``dropout``):
#: the runs logged here dropped attention weights at the plan's ``dropout``, and still do.
ATTN_DROPOUT = ("mult", "coattention", "bottleneck")
NO_DROPOUT = ("late",)  # fusions without a dropout parameter

# data set -> its config file, the benchmark's overrides, its modalities, and the dropout
# that every fusion of that data set gets.
PLANS: dict[str, dict[str, Any]] = {
    "mosi": {
        "modalities": ("transcript", "audio"),
        "dropout": 0.5,
        "config": "configs/mosi_transcript_audio.yaml",
        "overrides": [],
    },
    "av_digits": {
        "modalities": ("audio", "image"),
        "dropout": 0.1,
        "config": "configs/av_digits.yaml",
        "overrides": ["data.options.images_per_recording=2", "optim.epochs=4", "patience=2"],
    },
    "har_phone_watch": {
        "modalities": ("phone", "watch"),
        "dropout": 0.1,
        "config": "configs/har_phone_watch.yaml",
        # 25 Hz instead of the config's 50 Hz: 50-step windows keep the sequence fusions'
        # attention (quadratic in length) affordable; the single-device rows use it too.
        "overrides": ["data.options.rate=25.0", "optim.epochs=10", "patience=3"],
    },
}


def base_config(dataset: str) -> TrainConfig:
    """The data set's shipped config with the benchmark's overrides."""
    plan = PLANS[dataset]
    cfg = load_config(REPO / plan["config"], plan["overrides"])
    assert isinstance(cfg, TrainConfig)
    return cfg


def methods(dataset: str, fusions: Sequence[str]) -> list[tuple[str, tuple[str, ...], str]]:
    """(method name, modalities, fusion) rows: each single modality, then every fusion."""
    mods = PLANS[dataset]["modalities"]
    rows = [(f"only_{m}", (m,), "early") for m in mods]
    return rows + [(f, tuple(mods), f) for f in fusions]


def method_config(
    dataset: str, mods: tuple[str, ...], fusion: str, seed: int, out: str
) -> TrainConfig:
    """The TrainConfig of one run: the data set's config with ``fusion`` over ``mods``."""
    plan = PLANS[dataset]
    cfg = base_config(dataset)
    params = dict(FUSION_PARAMS[fusion])
    if fusion not in NO_DROPOUT:
        params["dropout"] = plan["dropout"]
    if fusion in ATTN_DROPOUT:  # as measured: attention weights dropped like the residuals
        params["attn_dropout"] = plan["dropout"]
    drop = cfg.model.modality_dropout
    return cfg.replace(
        **{
            "model.encoders": {m: cfg.model.encoders[m].to_dict() for m in mods},
            "model.fusion": {"name": fusion, "params": params},
            "model.modality_dropout": {m: drop.get(m, 0.1) for m in mods} if len(mods) > 1 else {},
            "data.options.modalities": list(mods),
            "seed": seed,
            "device": "cpu",
            "progress": False,
            "output_dir": out,
            "name": f"{dataset}_{fusion}_{'_'.join(mods)}_s{seed}",
        }
    )


# --------------------------------------------------------------------------- one run


@torch.no_grad()
def latency_ms(model: torch.nn.Module, ds: MultimodalDataset, n: int = 30) -> float:
    """Median milliseconds of one batch-size-1 forward pass over ``n`` test examples
    (after 3 warm-up passes), in eval mode."""
    model.eval()
    batches = [collate([ds[i]], ds.schema) for i in range(min(n, len(ds)))]
    for b in batches[:3]:
        model(b)
    times = []
    for b in batches:
        t0 = time.perf_counter()
        model(b)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run_one(dataset: str, mods: tuple[str, ...], fusion: str, seed: int) -> dict[str, float]:
    """Train one (data set, modalities, fusion, seed) and return its measurements."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = method_config(dataset, mods, fusion, seed, tmp)
        strategy = build_strategy(cfg)
        model = strategy.model
        t0 = time.perf_counter()
        res = Trainer(cfg, strategy).fit()
        wall = time.perf_counter() - t0
        test_ds = load_dataset(dataset, split="test", root=cfg.data.root, **cfg.data.options)
        assert res.test is not None and res.best_val is not None  # every plan has both
        fusion_module = getattr(model, "fusion", None)
        return {
            "accuracy": float(res.test["accuracy"]),
            "macro_f1": float(res.test["macro_f1"]),
            "val_accuracy": float(res.best_val.get("accuracy", float("nan"))),
            "params": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "fusion_params": float(
                sum(p.numel() for p in fusion_module.parameters() if p.requires_grad)
                if fusion_module is not None
                else 0
            ),
            "seconds_per_epoch": res.seconds / max(res.epochs_run, 1),
            "epochs": float(res.epochs_run),
            "latency_ms": latency_ms(model, test_ds),
            "seconds": wall,
        }


def config_key(dataset: str, mods: tuple[str, ...], fusion: str, seed: int) -> str:
    """A short hash of one run's full config, so logged runs are reused only if unchanged."""
    cfg = method_config(dataset, mods, fusion, seed, "runs").to_dict()
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def _init_worker() -> None:
    torch.set_num_threads(1)


# --------------------------------------------------------------------------- summary


def summarise(
    dataset: str, name: str, mods: tuple[str, ...], fusion: str, runs: list[dict[str, float]]
) -> list[dict[str, Any]]:
    """One record per metric: mean and std over the seeds' runs."""
    out = []
    seconds = statistics.mean(r["seconds"] for r in runs)
    for metric in (
        "accuracy",
        "macro_f1",
        "params",
        "fusion_params",
        "seconds_per_epoch",
        "latency_ms",
        "epochs",
    ):
        vals = [r[metric] for r in runs]
        out.append(
            seed_record(
                "fusion",
                dataset,
                name,
                metric,
                vals,
                seconds=seconds,
                modalities="+".join(mods),
                fusion=fusion,
            )
        )
    return out


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """A compact markdown table: one row per (data set, method)."""
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["dataset"], r["method"]), {})[r["metric"]] = r
    head = (
        "| dataset | method | accuracy | macro_f1 | params | fusion params | s/epoch | "
        "latency ms | n |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for (ds, method), m in rows.items():

        def pm(
            key: str, m: dict[str, dict[str, Any]] = m, scale: float = 100.0, digits: int = 1
        ) -> str:
            r = m.get(key)
            if r is None:
                return ""
            std = r["std"] if r["std"] is not None else 0.0
            return f"{r['value'] * scale:.{digits}f} ± {std * scale:.{digits}f}"

        lines.append(
            f"| {ds} | {method} | {pm('accuracy')} | {pm('macro_f1')} | "
            f"{m['params']['value']:,.0f} | {m['fusion_params']['value']:,.0f} | "
            f"{m['seconds_per_epoch']['value']:.2f} | {m['latency_ms']['value']:.2f} | "
            f"{m['accuracy']['n_seeds']} |"
        )
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], path: Path) -> bool:
    """Test accuracy against inference latency, a point per fusion per data set (PNG).

    Returns False (and writes nothing) when matplotlib is not installed
    (``pip install -e ".[plot]"``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    by: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        by.setdefault((r["dataset"], r["method"]), {})[r["metric"]] = r["value"]
    datasets = sorted({ds for ds, _ in by})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for (d, method), m in sorted(by.items()):
            if d != ds:
                continue
            single = method.startswith("only_")
            ax.scatter(
                m["latency_ms"],
                100 * m["accuracy"],
                marker="s" if single else "o",
                color="grey" if single else "C0",
                s=18 + m["params"] ** 0.5 / 4,
            )
            ax.annotate(
                method,
                (m["latency_ms"], 100 * m["accuracy"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("inference latency per example, batch 1 (ms, log)")
        ax.set_ylabel("test accuracy (%), mean of seeds")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "polymodal fusions: accuracy against cost (marker area ~ parameters; "
        "squares = single modality)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(PLANS), choices=list(PLANS))
    ap.add_argument(
        "--fusions", nargs="+", default=sorted(FUSION_PARAMS), choices=sorted(FUSION_PARAMS)
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--no-single", action="store_true", help="skip the single-modality rows")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the runs already logged in fusion_runs.jsonl (default: reuse them)",
    )
    args = ap.parse_args(argv)
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    register_components()
    if set(FUSION_PARAMS) != set(FUSIONS.names()):
        missing = sorted(set(FUSIONS.names()) - set(FUSION_PARAMS))
        print(f"note: registered fusions without benchmark settings: {missing}", flush=True)

    tasks = []
    for ds in args.datasets:
        for name, mods, fusion in methods(ds, args.fusions):
            if args.no_single and name.startswith("only_"):
                continue
            tasks.extend((ds, name, mods, fusion, seed) for seed in range(args.seeds))
    results_dir = Path(args.results_dir) if args.results_dir else REPO / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    # Every finished run is appended to a log, so an interrupted benchmark resumes where it
    # stopped instead of losing its runs.
    log = results_dir / "fusion_runs.jsonl"
    if args.fresh and log.exists():
        log.unlink()
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    done: set[tuple[str, str, int]] = set()
    keys = {(t[0], t[1], t[4]): config_key(t[0], t[2], t[3], t[4]) for t in tasks}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            key = (row["dataset"], row["method"], int(row["seed"]))
            if key in keys and key not in done and row.get("config") == keys[key]:
                done.add(key)
                results.setdefault(key[:2], []).append(row["result"])
    todo = [t for t in tasks if (t[0], t[1], t[4]) not in done]
    print(f"{len(tasks)} runs, {len(tasks) - len(todo)} already logged in {log}", flush=True)
    t_start = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=args.jobs, mp_context=get_context("spawn"), initializer=_init_worker
    ) as pool:
        futures = {
            pool.submit(run_one, ds, mods, fusion, seed): (ds, name, mods, fusion, seed)
            for ds, name, mods, fusion, seed in todo
        }
        for fut in as_completed(futures):
            ds, name, _mods, _fusion, seed = futures[fut]
            r = fut.result()
            results.setdefault((ds, name), []).append(r)
            with log.open("a") as fh:
                row = {"dataset": ds, "method": name, "seed": seed, "result": r}
                row["config"] = keys[(ds, name, seed)]
                fh.write(json.dumps(row))
                fh.write("\n")
            print(
                f"{ds:16} {name:18} seed {seed}: test acc {r['accuracy']:.4f} "
                f"f1 {r['macro_f1']:.4f} val {r['val_accuracy']:.4f} "
                f"{r['epochs']:.0f} ep {r['seconds']:.0f} s  "
                f"[{time.perf_counter() - t_start:.0f} s]",
                flush=True,
            )
    total = time.perf_counter() - t_start
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = child.ru_utime + child.ru_stime  # CPU seconds of the worker processes

    records: list[dict[str, Any]] = []
    index = {(ds, name): (mods, fusion) for ds, name, mods, fusion, _ in tasks}
    for (ds, name), runs in results.items():
        mods, fusion = index[(ds, name)]
        records.extend(summarise(ds, name, mods, fusion, runs))
    # keep rows not re-run, so slices can be run separately
    records = merge_records(previous_records("fusion", results_dir), records)
    print_table(records)
    table = summary_table(records)
    print(table)
    plotted = plot(records, results_dir / "fusion.png")
    write_results(
        "fusion",
        records,
        title="Fusion benchmark: every fusion on three data sets",
        notes=(
            "Summary (accuracy and macro_f1 in percent, mean ± std over seeds; params: "
            "trainable parameters of the whole model; s/epoch: training wall time per epoch "
            "incl. validation; latency: batch-1 inference per example, median, measured "
            "while the other worker trained):\n\n"
            + table
            + f"\n\nThis run: {total / 60:.1f} min wall, {cpu / 60:.1f} min of worker CPU "
            f"time ({len(todo)} runs; {args.jobs} worker processes of 1 thread each)."
            + ("\n\nPlot: fusion.png" if plotted else "")
        ),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
