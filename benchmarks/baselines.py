"""Baselines: each single modality, early fusion and late fusion on three real data sets.

For mosi, av_digits and har_phone_watch, trains every method with several seeds and
reports the mean and std of the test metrics (accuracy, macro_f1) and the training time.
Validation (model selection, early stopping) is carved from train by group (video,
speaker, subject); the test split is read once per run with the best weights.

    POLYMODAL_DATA=../shared/data python benchmarks/baselines.py            # all, 3 seeds
    POLYMODAL_DATA=../shared/data python benchmarks/baselines.py --datasets mosi --seeds 1

``--ensemble K`` also trains K - 1 more models per seed (seeds ``seed + 100 k``), all with
``data.split_seed = seed``: every member holds out the same validation group as the
single model of that seed (member 0 *is* that model), so the seed ensemble (the mean of
the members' class probabilities, :func:`polymodal.inference.ensemble_predictions`) and the
single model are compared on one validation split before the test numbers are read.  Its
rows are ``<method>_ensemble<K>``; ``val_accuracy`` of both rows is what to choose by.

Writes benchmarks/results/baselines.{json,md}.
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

from _common import (
    ENSEMBLE_STRIDE,
    ensemble_scores,
    merge_records,
    previous_records,
    print_table,
    seed_record,
    write_results,
)
from polymodal.apps.demo import demo_config
from polymodal.training import TrainConfig, load_config, train

REPO = Path(__file__).resolve().parents[1]

# dataset -> (config file, modalities, extra method rows (name, modalities, fusion),
# "own": method -> (a config of its own, key=value overrides), run as it is but for seed
# and output folder, and "encoders_from": method -> a config whose encoders replace the
# shipped config's)
PLANS: dict[str, dict[str, Any]] = {
    "mosi": {
        "config": None,  # the demo's MiniLM-on-transcripts setup (apps.demo.demo_config)
        "modalities": ("transcript", "audio", "video"),
        "extra": [
            ("early_transcript_audio", ("transcript", "audio"), "early"),
            ("late_transcript_audio", ("transcript", "audio"), "late"),
            ("late_calibrated_transcript_audio", ("transcript", "audio"), "late"),
        ],
        "fusion_params": {"late_calibrated_transcript_audio": {"calibrate": True}},
    },
    "av_digits": {
        "config": "configs/av_digits.yaml",
        "modalities": ("audio", "image"),
        # audio_speaker_norm: transductive (each test speaker's band statistics come from
        # that speaker's own unlabelled test clips)
        "extra": [
            ("audio_speaker_norm", ("audio",), "early"),
            ("early_tuned_audio", ("audio", "image"), "early"),
            ("late_image_augment", ("audio", "image"), "late"),
            ("late_mean_probs_image_augment", ("audio", "image"), "late"),
            ("late_calibrated_image_augment", ("audio", "image"), "late"),
            ("late_calibrated", ("audio", "image"), "late"),
            ("late_calibrated_tuned_audio_image_augment", ("audio", "image"), "late"),
        ],
        "fusion_params": {"late_calibrated": {"calibrate": True}},
        "encoders_from": {"early_tuned_audio": "configs/av_digits_audio.yaml"},
        "own": {
            "audio": ("configs/av_digits_audio.yaml", []),
            "audio_speaker_norm": (
                "configs/av_digits_audio.yaml",
                ["model.encoders.audio.params.speaker_norm=true"],
            ),
            "late_image_augment": (
                "configs/av_digits_augment.yaml",
                ["model.fusion.params.calibrate=false"],
            ),
            "late_mean_probs_image_augment": (
                "configs/av_digits_augment.yaml",
                ["model.fusion.params.combine=mean_probs"],
            ),
            "late_calibrated_image_augment": ("configs/av_digits_augment.yaml", []),
            # configs/av_digits_audio.yaml's voice encoder in the shipped late fusion
            "late_calibrated_tuned_audio_image_augment": (
                "configs/av_digits_augment.yaml",
                [
                    "model.encoders.audio={name: audio_cnn, params: {dim: 128, channels: "
                    "[16, 32, 64, 64], n_mels: 40, dropout: 0.3, freq_pool: flatten}}"
                ],
            ),
        },
    },
    "har_phone_watch": {
        "config": "configs/har_phone_watch.yaml",
        "modalities": ("phone", "watch"),
        "extra": [("late_calibrated", ("phone", "watch"), "late")],
        "fusion_params": {"late_calibrated": {"calibrate": True}},
    },
}


def method_config(
    dataset: str, mods: tuple[str, ...], fusion: str, seed: int, out: str, method: str = ""
) -> TrainConfig:
    """One run's config: MOSI's is the demo's (``polymodal.apps.demo.demo_config``); a
    method with a config of its own (the plan's ``own``) runs that config; the others are
    the shipped config with ``fusion`` over ``mods`` (and, for a method in the plan's
    ``encoders_from``, the encoders of that config); the plan's ``fusion_params`` of a
    method are added to its fusion's params."""
    plan = PLANS[dataset]
    extra = plan.get("fusion_params", {}).get(method, {})
    if plan["config"] is None:
        cfg = demo_config(mods, fusion, seed, output_dir=out)
        return _with_fusion_params(cfg, extra)
    own = plan.get("own", {}).get(method)
    if own is not None:
        path, overrides = own
        cfg = load_config(REPO / path, overrides)
        assert isinstance(cfg, TrainConfig)
        return cfg.replace(
            seed=seed, device="cpu", progress=False, output_dir=out, name=f"{method}_s{seed}"
        )
    cfg = load_config(REPO / plan["config"])
    assert isinstance(cfg, TrainConfig)
    if fusion == "late":
        fusion_cfg = {"name": "late", "params": {"combine": "mean"}}
    else:
        fusion_cfg = {"name": "early", "params": dict(cfg.model.fusion.params)}
    encoders = {m: cfg.model.encoders[m].to_dict() for m in mods}
    source = plan.get("encoders_from", {}).get(method)
    if source is not None:
        other = load_config(REPO / source)
        assert isinstance(other, TrainConfig)
        encoders.update({m: e.to_dict() for m, e in other.model.encoders.items() if m in mods})
    drop = cfg.model.modality_dropout
    changes: dict[str, Any] = {
        "model.encoders": encoders,
        "model.fusion": fusion_cfg,
        "model.modality_dropout": {m: drop.get(m, 0.3) for m in mods} if len(mods) > 1 else {},
        "data.options.modalities": list(mods),
        "seed": seed,
        "device": "cpu",
        "progress": False,
        "output_dir": out,
        "name": f"{cfg.name}_{method if source else fusion}_{'_'.join(mods)}_s{seed}",
    }
    if fusion == "late":
        changes["model.head"] = {}
    return _with_fusion_params(cfg.replace(**changes), extra)


def _with_fusion_params(cfg: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """``cfg`` with ``params`` added to its fusion's params."""
    if not params:
        return cfg
    fusion = cfg.model.fusion
    return cfg.replace(
        **{"model.fusion": {"name": fusion.name, "params": {**fusion.params, **params}}}
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(PLANS), choices=list(PLANS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--methods", nargs="+", default=None, help="run only these methods (e.g. audio early)"
    )
    ap.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="K",
        help="also a seed ensemble of K models per seed, sharing its validation split",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    if args.ensemble < 1:
        ap.error(f"--ensemble must be >= 1 (1: no ensemble), got {args.ensemble}")
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    torch.set_num_threads(args.threads)

    records: list[dict[str, Any]] = []
    for ds in args.datasets:
        plan = PLANS[ds]
        mods = plan["modalities"]
        methods = [(m, (m,), "early") for m in mods]
        methods += [("early", mods, "early"), ("late", mods, "late")] + plan["extra"]
        if args.methods:
            methods = [m for m in methods if m[0] in args.methods]
        for name, ms, fusion in methods:
            keys = ("accuracy", "macro_f1", "val_accuracy")
            scores: dict[str, list[float]] = {k: [] for k in keys}
            ens: dict[str, list[float]] = {k: [] for k in keys}
            secs: list[float] = []
            ens_secs: list[float] = []
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as tmp:
                    members = []
                    for member in range(args.ensemble):
                        cfg = method_config(
                            ds,
                            ms,
                            fusion,
                            seed + ENSEMBLE_STRIDE * member,
                            f"{tmp}/m{member}",
                            name,
                        )
                        if args.ensemble > 1:  # one validation carve for every member
                            cfg = cfg.replace(**{"data.split_seed": seed})
                        t0 = time.perf_counter()
                        members.append(train(cfg))
                        secs.append(time.perf_counter() - t0)
                    res = members[0]  # the single model of this seed
                    test, val = res.test or {}, res.best_val or {}
                    scores["val_accuracy"].append(float(val.get("accuracy", float("nan"))))
                    for k in ("accuracy", "macro_f1"):
                        scores[k].append(float(test[k]))
                    print(
                        f"{ds:16} {name:24} seed {seed}: test acc {test['accuracy']:.4f} "
                        f"f1 {test['macro_f1']:.4f} val {val.get('accuracy', 0):.4f} "
                        f"({secs[-args.ensemble]:.0f} s)"
                        + (
                            f"  temperatures {res.info['modality_temperatures']}"
                            if "modality_temperatures" in res.info
                            else ""
                        ),
                        flush=True,
                    )
                    if args.ensemble > 1:
                        both = ensemble_scores([m.run_dir for m in members], cfg.data, cfg.seed)
                        ens["val_accuracy"].append(both["val"]["accuracy"])
                        for k in ("accuracy", "macro_f1"):
                            ens[k].append(both["test"][k])
                        ens_secs.append(sum(secs[-args.ensemble :]))
                        print(
                            f"{ds:16} {name:24} seed {seed}: ensemble of {args.ensemble}: test "
                            f"acc {both['test']['accuracy']:.4f} f1 {both['test']['macro_f1']:.4f}"
                            f" val {both['val']['accuracy']:.4f}",
                            flush=True,
                        )
            rows = [(name, scores, secs[:: args.ensemble])]
            if args.ensemble > 1:
                rows.append((f"{name}_ensemble{args.ensemble}", ens, ens_secs))
            for method, values, seconds in rows:
                for metric, vals in values.items():
                    records.append(
                        seed_record(
                            "baselines",
                            ds,
                            method,
                            metric,
                            vals,
                            seconds=statistics.mean(seconds),
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
