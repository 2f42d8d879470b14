"""Human activity recognition on har_phone_watch, subject-held-out: one window policy for
every method, windows read in the context of their recording, and each device missing.

**Window policy** (stated once, here, and used by every row but ``early_2s``): the phone and
watch streams aligned on a 50 Hz grid, cut into **1 s windows every 0.5 s**, each labelled by
the majority of its steps (``har_phone_watch(window=1.0, hop=0.5)``; mean label purity 0.85,
41 % of windows pure).  ``early_2s`` is the shipped ``configs/har_phone_watch.yaml`` as it is
(2 s windows every 1 s, mean purity 0.70, 12 % pure): its test windows are other windows, so
it is a reference for the policy, not a row to rank against the others.

Methods (``--methods``):

* ``early_2s``: the shipped window-level config (early fusion of two 1-D CNNs), 2 s windows;
* ``early``: the same window-level model under the policy, with the context config's IMU
  augmentation and each device hidden from 30 % of the training windows;
* ``early+gru``: ``configs/har_phone_watch_context.yaml``: the window model plus a
  bidirectional GRU over each recording's windows (``task: context``), IMU augmentation,
  each device hidden from 30 % of the training recordings, and the epoch kept by the mean
  validation macro-F1 over both devices, the phone alone and the watch alone
  (``monitor_without``);
* ``early+gru-aug``: the same without the IMU augmentation;
* ``phone+gru`` / ``watch+gru``: the context config on one device, trained on it alone: what
  a fused model without the other device is compared with.

Fused rows also report ``macro_f1_without_<device>`` / ``accuracy_without_<device>``: the same
trained model evaluated on the test split with that device absent from every window
(``polymodal evaluate RUN --drop DEVICE``).  Validation = a fifth of the training subjects
(carved by subject, by the seed); early stopping and model selection read validation only;
the test subjects (s04, s08, s12, s16, s20) are evaluated once per trained model.

    POLYMODAL_DATA=../shared/data python benchmarks/har.py                 # 3 seeds
    POLYMODAL_DATA=../shared/data python benchmarks/har.py --seeds 1 --methods early+gru

Writes benchmarks/results/har.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import merge_records, previous_records, print_table, seed_record, write_results
from polymodal.data.context import VideoDataset
from polymodal.inference import evaluate, evaluate_videos, load_trained
from polymodal.robustness import drop_modalities
from polymodal.training import RunConfig, load_config, train
from polymodal.training.data import dataset_for_split

REPO = Path(__file__).resolve().parents[1]
DEVICES = ("phone", "watch")
#: The window policy of every row but ``early_2s`` (see the module docstring).
POLICY = ["data.options.window=1.0", "data.options.hop=0.5"]
CONTEXT = "configs/har_phone_watch_context.yaml"
#: method -> (config, devices, overrides on top of the config).
METHODS: dict[str, tuple[str, tuple[str, ...], list[str]]] = {
    "early_2s": ("configs/har_phone_watch.yaml", DEVICES, []),
    "early": (
        "configs/har_phone_watch.yaml",
        DEVICES,
        [*POLICY, "model.modality_dropout={phone: 0.3, watch: 0.3}"],
    ),
    "early+gru": (CONTEXT, DEVICES, []),
    "early+gru-aug": (
        CONTEXT,
        DEVICES,
        [f"model.encoders.{d}.params.augment=null" for d in DEVICES],
    ),
    "phone+gru": (CONTEXT, ("phone",), []),
    "watch+gru": (CONTEXT, ("watch",), []),
}


def context_augment() -> dict[str, Any]:
    """The IMU augmentation of the context config (the same for both devices)."""
    cfg = load_config(REPO / CONTEXT)
    return dict(cfg.model.encoders["phone"].params["augment"])  # type: ignore[attr-defined]


def method_config(method: str, seed: int, out: str) -> RunConfig:
    """The run config of ``method`` at ``seed``, training into ``out``."""
    path, devices, overrides = METHODS[method]
    changes = [*overrides, f"seed={seed}", "device=cpu", "progress=false", f"output_dir={out}"]
    if method == "early":  # the window-level model with the context config's augmentation
        aug = context_augment()
        changes += [f"model.encoders.{d}.params.augment={aug}" for d in devices]
    if len(devices) == 1:
        (d,) = devices
        changes += [
            f"data.options.modalities=[{d}]",
            f"model.modality_dropout={{{d}: 0.0}}",
            "monitor_without=[]",  # one device: nothing to select over
        ]
        other = next(x for x in DEVICES if x != d)
        cfg = load_config(REPO / path, changes)
        encoders = {k: v for k, v in cfg.model.encoders.items() if k != other}  # type: ignore[attr-defined]
        return cfg.replace(**{"model.encoders": {k: v.to_dict() for k, v in encoders.items()}})
    return load_config(REPO / path, changes)


def run(method: str, seed: int) -> dict[str, Any]:
    """Train ``method`` at ``seed``; its test metrics, with each device dropped if fused."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = method_config(method, seed, f"{tmp}/run")
        res = train(cfg)
        assert res.test is not None and res.best_val is not None
        out = {k: float(res.test[k]) for k in ("accuracy", "macro_f1")}  # the run's own test
        devices = METHODS[method][1]
        if len(devices) > 1:  # the best weights again, each device absent from the test split
            trained = load_trained(res.run_dir)
            test = dataset_for_split(cfg.data, seed, "test")
            for d in devices:
                drop = lambda b, d=d: drop_modalities(b, [d])  # noqa: E731
                if cfg.task == "context":
                    m = evaluate_videos(trained.model, VideoDataset(test), transform=drop)
                else:
                    m = evaluate(trained.model, test, "classification", "cpu", 256, transform=drop)
                out.update({f"{k}_without_{d}": float(m[k]) for k in ("accuracy", "macro_f1")})
        val = float(res.best_val["macro_f1"])
        epochs = res.epochs_run
    return {"metrics": out, "val": val, "epochs": epochs, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    torch.set_num_threads(args.threads)

    records: list[dict[str, Any]] = []
    for method in args.methods:
        runs = []
        for seed in range(args.seeds):
            r = run(method, seed)
            runs.append(r)
            m = r["metrics"]
            extra = "  ".join(
                f"F1 w/o {d} {m[f'macro_f1_without_{d}']:.4f}"
                for d in DEVICES
                if f"macro_f1_without_{d}" in m
            )
            print(
                f"{method:14} seed {seed}: test F1 {m['macro_f1']:.4f} acc {m['accuracy']:.4f} "
                f"{extra}  val F1 {r['val']:.4f}  epochs {r['epochs']}  ({r['seconds']:.0f} s)",
                flush=True,
            )
        secs = statistics.mean(r["seconds"] for r in runs)
        metrics = {"val_macro_f1": [r["val"] for r in runs]}
        for key in runs[0]["metrics"]:
            metrics[key] = [r["metrics"][key] for r in runs]
        for metric, vals in metrics.items():
            records.append(
                seed_record(
                    "har",
                    "har_phone_watch",
                    method,
                    metric,
                    vals,
                    seconds=secs,
                    devices="+".join(METHODS[method][1]),
                    windows="2 s / 1 s" if method == "early_2s" else "1 s / 0.5 s",
                )
            )
    print_table(records)
    records = merge_records(previous_records("har", args.results_dir), records)
    cmd = "POLYMODAL_DATA=../shared/data python benchmarks/har.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_results(
        "har",
        records,
        title="HAR phone + watch, subject-held-out: window policy, context, missing devices",
        notes=(
            "Test metrics on the 5 held-out subjects (per window), mean and std over seeds; "
            "val_macro_f1 is the selected epoch's validation macro-F1 (both devices). Window "
            "policy of every "
            "row but early_2s: 1 s windows every 0.5 s at 50 Hz, labelled by majority (mean "
            "purity 0.85); early_2s is the shipped 2 s config (mean purity 0.70, other test "
            "windows). `_without_<device>`: the same trained model with that device absent "
            "from every test window. +gru: configs/har_phone_watch_context.yaml (bidirectional "
            "GRU over each recording's windows, IMU augmentation "
            f"{context_augment()}, a device hidden per recording, the epoch kept by the mean "
            "validation macro-F1 over both devices, no phone and no watch: monitor_without); "
            "-aug: without the augmentation. Runs of other methods are kept from earlier "
            "invocations (each row's commit is in har.json). "
            f"seconds: mean wall time of one run ({args.threads} torch threads)."
        ),
        command=cmd.strip(),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
