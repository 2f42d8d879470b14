"""Modality imbalance on a shipped config: does a balance method train the weaker encoder?

Trains a run config (default ``configs/av_digits.yaml``, the spoken-digit + handwritten-digit
set as shipped: 6 images per recording, 5 epochs, early fusion) once per seed with plain
joint training (``optim.balance=none``) and with each method of ``--balance``
(:mod:`polymodal.training.balance`: OGM-GE, Gradient-Blending, MLA, unimodal losses), and
measures on the test split, with the best epoch's weights:

* ``accuracy``: the fused model;
* ``probe_accuracy_<m>``: a linear probe on each frozen encoder (fitted on train, L2 chosen
  on validation: :func:`polymodal.training.probe.probe_modalities`);
* ``val_score``: the best epoch's validation monitor.

The target (issue 11): a method raises the probe accuracy of the weakest encoder under plain
training by at least ``PROBE_GAIN`` (5 points) while the fused accuracy falls by at most
``PROBE_MAX_COST`` (0.3 points), means over seeds.  ``benchmarks/robustness.py`` asks the
same of the fusion benchmark's smaller av_digits plan (2 images per recording, 4 epochs);
this file measures it on the config a user trains.  Validation is carved from train by
speaker; the test split is read once per trained model.

    POLYMODAL_DATA=../shared/data python benchmarks/imbalance.py            # 3 seeds, 2 jobs
    POLYMODAL_DATA=../shared/data python benchmarks/imbalance.py --balance unimodal \
        --override optim.balance.unimodal_weight=0.3    # a method's setting; own plain runs
    POLYMODAL_DATA=../shared/data python benchmarks/imbalance.py --balance unimodal \
        --grid optim.balance.unimodal_weight=0.1,0.3,1.0  # chosen on validation

Each invocation trains its own plain runs; its methods are judged against those (records
carry ``run``, the invocation's commit), and earlier invocations' records are kept.

Writes benchmarks/results/imbalance.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import commit, merge_records, previous_records, print_table, seed_record, write_results
from robustness import BALANCE, PROBE_GAIN, PROBE_MAX_COST

REPO = Path(__file__).resolve().parents[1]
NAME = "imbalance"


def run_one(
    config: str, balance: str, seed: int, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Train ``config`` with ``balance`` at ``seed``; fused test accuracy and probes.

    ``overrides`` (``key=value``) are applied after the balance method, for instance a
    method's own setting such as ``optim.balance.unimodal_weight=0.3``.
    """
    from polymodal.inference import evaluate, load_trained
    from polymodal.training import Trainer, load_config
    from polymodal.training.data import dataset_for_split
    from polymodal.training.probe import probe_modalities
    from polymodal.training.tasks import build_strategy

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            REPO / config,
            [
                f"optim.balance.method={balance}",
                f"seed={seed}",
                "device=cpu",
                "progress=false",
                f"output_dir={tmp}/run",
                *overrides,
            ],
        )
        res = Trainer(cfg, build_strategy(cfg)).fit()
        trained = load_trained(res.checkpoint)
        splits = {s: dataset_for_split(cfg.data, seed, s) for s in ("train", "val", "test")}
        size = cfg.data.batch_size
        test = evaluate(trained.model, splits["test"], batch_size=size)
        probes = probe_modalities(
            trained, splits["train"], splits["val"], splits["test"], batch_size=size
        )
        assert res.best_val is not None
        return {
            "accuracy": float(test["accuracy"]),
            "val": float(res.best_val[cfg.selection_metric]),
            "probe": probes,
            "epochs": res.epochs_run,
            "seconds": time.perf_counter() - t0,
        }


def label(override: str) -> str:
    """``optim.balance.unimodal_weight=0.3`` -> ``unimodal_weight=0.3`` (a method's name)."""
    key, _, value = override.partition("=")
    return f"{key.rsplit('.', 1)[-1]}={value}"


def grid_overrides(grid: str | None) -> list[tuple[str, ...]]:
    """``optim.balance.unimodal_weight=0.1,0.3,1.0`` -> one override per value; ``None``:
    one run with no grid override.

    Raises:
        ValueError: not ``KEY=V1,V2,...`` with at least one value.
    """
    if grid is None:
        return [()]
    key, sep, values = grid.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key or not items:
        raise ValueError(
            f"--grid must be KEY=V1,V2,... (e.g. optim.balance.unimodal_weight=0.1,0.3,1.0); "
            f"got {grid!r}."
        )
    return [(f"{key}={v}",) for v in items]


def choose_on_validation(val_scores: dict[str, list[float]], tol: float = 1e-9) -> str:
    """The method (a grid value) with the best mean validation score over seeds; of means
    within ``tol`` of the best (a tie), the first listed wins.  The test split plays no
    part."""
    means = {m: statistics.mean(v) for m, v in val_scores.items()}
    best = max(means.values())
    return next(m for m, v in means.items() if v >= best - tol)


def verdicts(records: list[dict[str, Any]], dataset: str) -> list[str]:
    """The target's verdict per balance method, against plain training's weakest encoder.

    Each invocation's methods (records' ``run``) are compared with that invocation's plain
    run, so that kept results of an older commit never meet a newer baseline.
    """
    records = [r for r in records if r["dataset"] == dataset]
    out: list[str] = []
    for run in dict.fromkeys(r.get("run") for r in records):
        out += _verdicts([r for r in records if r.get("run") == run], dataset, run)
    return out


def _verdicts(records: list[dict[str, Any]], dataset: str, run: str | None) -> list[str]:
    get = {(r["method"], r["metric"]): r["value"] for r in records}
    probes = {k[1][len("probe_accuracy_") :]: v for k, v in get.items() if k[0] == "none" and k[1].startswith("probe_accuracy_")}  # fmt: skip
    if not probes or ("none", "accuracy") not in get:
        return []
    weak = min(probes, key=lambda m: probes[m])
    out = []
    for method in dict.fromkeys(r["method"] for r in records if r["dataset"] == dataset):
        if method == "none" or (method, f"probe_accuracy_{weak}") not in get:
            continue
        gain = get[(method, f"probe_accuracy_{weak}")] - probes[weak]
        cost = get[("none", "accuracy")] - get[(method, "accuracy")]
        ok = gain >= PROBE_GAIN - 1e-9 and cost <= PROBE_MAX_COST + 1e-9
        chosen = any(r.get("chosen_on_validation") for r in records if r["method"] == method)
        out.append(
            f"- {dataset}{f' (run {run})' if run else ''}, {method}"
            f"{' (chosen on validation from its grid)' if chosen else ''}: probe accuracy of the weakest encoder ({weak}) "
            f"{gain * 100:+.1f} points over plain training, fused accuracy {-cost * 100:+.1f}: "
            f"{'meets' if ok else 'misses'} the target (>= +{PROBE_GAIN * 100:.0f}, "
            f">= -{PROBE_MAX_COST * 100:.1f})"
        )
    return out


def notes(lines: list[str], jobs: int) -> str:
    """The results file's notes: what the columns mean, then the verdicts."""
    return (
        "Test accuracy of the fused model and of a linear probe on each frozen encoder "
        "(L2 chosen on validation), mean ± std over seeds, plain joint training (none) "
        "against each balance method (optim.balance; a method's name lists the overrides "
        "of its settings). val_score: the best epoch's validation monitor. run: the commit "
        "of the invocation; each invocation trains its own plain runs, and its methods are "
        f"compared with those. seconds: mean wall time of one run ({jobs} worker processes "
        "of 1 thread each).\n\n### Target\n\n" + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="configs/av_digits.yaml")
    ap.add_argument("--balance", nargs="*", default=list(BALANCE), choices=list(BALANCE))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument(
        "--override",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for the balance methods' runs (not plain training's); the "
        "method's name in the records lists them, e.g. 'unimodal unimodal_weight=0.3'",
    )
    ap.add_argument(
        "--grid",
        default=None,
        metavar="KEY=V1,V2,...",
        help="run each balance method once per value of this setting (one plain training "
        "for all); the value with the best mean validation score (a tie: the first listed) "
        "is marked and judged as 'chosen on validation', e.g. "
        "optim.balance.unimodal_weight=0.1,0.3,1.0",
    )
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    dataset = f"{Path(args.config).stem} (shipped config)"
    # (balance method, its overrides) -> the method's name in the records
    variants = {("none", ()): "none"}
    grids: dict[str, list[str]] = {}  # balance method -> its grid's method names
    for b in args.balance:
        for extra in grid_overrides(args.grid):
            ovr = (*args.override, *extra)
            variants[(b, ovr)] = b + "".join(f" {label(o)}" for o in ovr)
            grids.setdefault(b, []).append(variants[(b, ovr)])
    methods = list(variants.values())
    runs: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in methods}
    t_start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(run_one, args.config, b, s, ovr): (method, s)
            for (b, ovr), method in variants.items()
            for s in range(args.seeds)
        }
        for fut in as_completed(futures):
            method, seed = futures[fut]
            r = runs[method][seed] = fut.result()
            probes = "  ".join(f"probe {k} {v:.4f}" for k, v in r["probe"].items())
            print(
                f"{method:9} seed {seed}: test acc {r['accuracy']:.4f}  {probes}  val "
                f"{r['val']:.4f}  epochs {r['epochs']}  ({r['seconds']:.0f} s)  "
                f"[{time.perf_counter() - t_start:.0f} s]",
                flush=True,
            )
    chosen = set()
    if args.grid is not None:
        for names in grids.values():
            val = {m: [r["val"] for r in runs[m].values()] for m in names}
            chosen.add(choose_on_validation(val))
        print(f"chosen on validation: {', '.join(sorted(chosen))}", flush=True)
    records: list[dict[str, Any]] = []
    for method in methods:
        seed_runs = [runs[method][s] for s in sorted(runs[method])]
        secs = statistics.mean(r["seconds"] for r in seed_runs)
        metrics = {
            "accuracy": [r["accuracy"] for r in seed_runs],
            "val_score": [r["val"] for r in seed_runs],
            **{
                f"probe_accuracy_{m}": [r["probe"][m] for r in seed_runs]
                for m in seed_runs[0]["probe"]
            },
        }
        for metric, vals in metrics.items():
            records.append(
                seed_record(
                    NAME,
                    dataset,
                    method,
                    metric,
                    vals,
                    seconds=secs,
                    config=args.config,
                    run=commit(),  # the invocation: its methods are compared with its plain run
                    **({"chosen_on_validation": True} if method in chosen else {}),
                )
            )
    print_table(records)
    key = ("dataset", "method", "run")
    records = merge_records(previous_records(NAME, args.results_dir), records, key)
    lines = verdicts(records, dataset)  # every method on record, against the latest plain run
    print("\n".join(lines))
    cmd = "POLYMODAL_DATA=../shared/data python benchmarks/imbalance.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_results(
        NAME,
        records,
        title="Modality imbalance on a shipped config: the weaker encoder's probe accuracy",
        notes=notes(lines, args.jobs),
        command=cmd.strip(),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
