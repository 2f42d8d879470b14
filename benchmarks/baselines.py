"""Baselines: each single modality, early fusion and late fusion on three real data sets.

For mosi, av_digits and har_phone_watch, trains every method with several seeds and
reports the mean and std of the test metrics (accuracy, macro_f1) and the training time.
Validation (model selection, early stopping) is carved from train by group (video,
speaker, subject); the test split is read once per run with the best weights.

    POLYMODAL_DATA=../shared/data python benchmarks/baselines.py            # all, 3 seeds
    POLYMODAL_DATA=../shared/data python benchmarks/baselines.py --datasets mosi --seeds 1

Writes benchmarks/results/baselines.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import merge_records, previous_records, print_table, record, write_results
from polymodal.apps.demo import ENCODERS as MOSI_ENCODERS
from polymodal.training.config import TrainConfig, load_config
from polymodal.training.trainer import train

REPO = Path(__file__).resolve().parents[1]

# dataset -> (config file, modalities, extra method rows (name, modalities, fusion))
PLANS: dict[str, dict[str, Any]] = {
    "mosi": {
        "config": None,  # built from the demo's MiniLM-on-transcripts setup below
        "modalities": ("transcript", "audio", "video"),
        "extra": [
            ("early_transcript_audio", ("transcript", "audio"), "early"),
            ("late_transcript_audio", ("transcript", "audio"), "late"),
        ],
    },
    "av_digits": {
        "config": "configs/av_digits.yaml",
        "modalities": ("audio", "image"),
        "extra": [],
    },
    "har_phone_watch": {
        "config": "configs/har_phone_watch.yaml",
        "modalities": ("phone", "watch"),
        "extra": [],
    },
}


def _mosi_base() -> dict[str, Any]:
    return {
        "name": "mosi",
        "data": {"dataset": "mosi", "options": {}, "val_fraction": 0.2, "batch_size": 32},
        "model": {"encoders": copy.deepcopy(MOSI_ENCODERS), "fusion": {"name": "early"}},
        "optim": {"lr": 1e-3, "weight_decay": 0.05, "epochs": 20, "warmup_ratio": 0.05},
        "monitor": "accuracy",
        "patience": 5,
    }


def method_config(
    base: dict[str, Any], mods: tuple[str, ...], fusion: str, seed: int, out: str
) -> TrainConfig:
    cfg = copy.deepcopy(base)
    enc = cfg["model"]["encoders"]
    cfg["model"]["encoders"] = {m: enc[m] for m in mods}
    if fusion == "late":
        cfg["model"]["fusion"] = {"name": "late", "params": {"combine": "mean"}}
        cfg["model"]["head"] = {}
    else:
        params = dict(cfg["model"]["fusion"].get("params") or {"hidden_dim": 64, "dropout": 0.5})
        params.pop("combine", None)
        cfg["model"]["fusion"] = {"name": "early", "params": params}
    drop = cfg["model"].get("modality_dropout") or {}
    cfg["model"]["modality_dropout"] = {m: drop.get(m, 0.3) for m in mods} if len(mods) > 1 else {}
    if cfg["data"]["dataset"] == "mosi":
        cfg["data"]["options"] = {"modalities": list(mods)}
    elif cfg["data"]["dataset"] == "har_phone_watch":
        cfg["data"]["options"] = {**cfg["data"]["options"], "devices": list(mods)}
    cfg.update(seed=seed, device="cpu", progress=False, output_dir=out)
    cfg["name"] = f"{cfg['name']}_{fusion}_{'_'.join(mods)}_s{seed}"
    return TrainConfig.from_dict(cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(PLANS), choices=list(PLANS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--methods", nargs="+", default=None, help="run only these methods (e.g. audio early)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    torch.set_num_threads(args.threads)

    records: list[dict[str, Any]] = []
    for ds in args.datasets:
        plan = PLANS[ds]
        if plan["config"] is None:
            base = _mosi_base()
        else:
            base = load_config(REPO / plan["config"]).to_dict()
        mods = plan["modalities"]
        methods = [(m, (m,), "early") for m in mods]
        methods += [("early", mods, "early"), ("late", mods, "late")] + plan["extra"]
        if args.methods:
            methods = [m for m in methods if m[0] in args.methods]
        for name, ms, fusion in methods:
            scores: dict[str, list[float]] = {"accuracy": [], "macro_f1": []}
            secs: list[float] = []
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = method_config(base, ms, fusion, seed, tmp)
                    t0 = time.perf_counter()
                    res = train(cfg)
                    secs.append(time.perf_counter() - t0)
                test = res.test or {}
                for k in scores:
                    scores[k].append(float(test[k]))
                print(
                    f"{ds:16} {name:24} seed {seed}: test acc {test['accuracy']:.4f} "
                    f"f1 {test['macro_f1']:.4f} val {res.best_val.get('accuracy', 0):.4f} "
                    f"({secs[-1]:.0f} s)",
                    flush=True,
                )
            for metric, vals in scores.items():
                records.append(
                    record(
                        "baselines",
                        ds,
                        name,
                        metric,
                        statistics.mean(vals),
                        std=statistics.stdev(vals) if len(vals) > 1 else None,
                        n_seeds=len(vals),
                        seconds=statistics.mean(secs),
                        modalities="+".join(ms),
                        fusion=fusion,
                    )
                )
    # Keep the records of methods not re-run here, so data sets and methods can run separately.
    records = merge_records(previous_records("baselines", args.results_dir), records)
    print_table(records)
    cmd = "POLYMODAL_DATA=../shared/data python benchmarks/baselines.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_results(
        "baselines",
        records,
        title="Baselines: single modalities, early and late fusion",
        notes=(
            "Test metrics: mean and std over seeds. seconds: mean wall time of one training "
            "run (including evaluation) on this machine. MOSI text = transcripts through frozen "
            "all-MiniLM-L6-v2; audio and video = the release's openSMILE and 3D-CNN features."
        ),
        command=cmd.strip(),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
