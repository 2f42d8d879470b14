"""Robustness benchmark: noisy and missing modalities, imbalance, each modality's share.

On mosi (transcript + audio), av_digits (audio + image) and har_phone_watch (phone +
watch), with the data sizes and fusion widths of ``benchmarks/fusion.py`` (its ``PLANS``
and ``method_config``, so the two benchmarks train the same models), trains for each seed:

* every fusion in ``--fusions`` (default early, late, attention, gmu, mult) over both
  modalities, with modality dropout (the data set's rate, at least
  ``MIN_MODALITY_DROPOUT``), its epoch chosen by ``monitor_without`` (the data set's monitor
  averaged over both modalities present and each one absent, on validation: a model meant
  to work with a modality missing is also selected for it), and measures on the test split:
  ``accuracy``/``macro_f1``; ``accuracy_without_<m>``/``macro_f1_without_<m>`` (modality
  ``m`` absent from every test example, through the presence mask, as
  ``polymodal evaluate --drop m`` does); ``probe_accuracy_<m>`` (a linear probe on each
  frozen encoder, L2 chosen on validation: :func:`polymodal.training.probe.probe_modalities`);
  ``shapley_<m>`` (modality ``m``'s share of the mean |Shapley value| of the predicted
  class's probability, :func:`polymodal.robustness.explain_dataset`); and the robustness
  curves of every perturbation valid for each modality (:func:`polymodal.robustness.
  robustness_curves`, ``--levels``, one perturbation seed per training seed);
* a model per single modality (``only_<m>``, early fusion over that modality alone): the
  reference of the missing-modality target;
* each fusion of ``--perturb-fusions`` again with corruption training (``<fusion>+perturb``:
  ``optim.perturb`` = :data:`PERTURB_TRAIN`, i.e. each modality of half the training batches
  damaged by one of its perturbations, ``missing`` excepted, at a severity uniform in
  [0, 0.5]; the library's defaults otherwise), measured and selected like the fusions: the
  same perturbation families as the test curves, other random draws, and severities up to
  0.5 where the curves go to 0.9;
* each fusion of ``--holdout-fusions`` (none by default) trained like ``+perturb`` on some
  families only (``<fusion>+perturb_some``: :data:`HOLDOUT_TRAIN`, fixed per data set), to
  tell robustness that carries over to unseen corruptions from robustness to the ones
  trained on: every curved method gets ``effective_robustness_unseen``, its effective
  robustness averaged over the curves of the families ``+perturb_some`` did not see
  (``missing`` included).  These rows never compete for "best fusion";
* early fusion with each imbalance method of ``--balance`` (``early+ogm_ge`` ...): fused
  accuracy and probe accuracies, for the imbalance table; ``early+unimodal`` (the model's
  loss on each modality alone added to the fused loss) is also measured like the fusions
  and is a candidate for the best fusion (``ROBUST_BALANCE``), selected like the fusions;
  the other balance methods select on the plain monitor.

Relative and effective robustness (:func:`polymodal.robustness.robustness_summary`, the
reference being ``late`` fusion of the same seed) are computed per training seed and per
(modality, perturbation) curve, then averaged over the curves (``modality="all"``) and
reported as mean ± std over seeds.  Validation is carved from train by video, speaker or
subject; the "best fusion" of a data set is the one with the highest mean validation score
(``val_score``: the score that selected each run's epoch, so for the fusions the monitor's
mean over the presence conditions), never chosen on test.

Writes ``benchmarks/results/robustness.{json,md}`` (curve points are records with
``modality``, ``perturbation`` and ``severity`` columns) and ``robustness_<dataset>.png``.
Finished runs are logged to ``robustness_runs.jsonl`` with a hash of their config and of
the evaluation settings, and the commit they were trained at; a second invocation reuses
them (``--fresh`` starts over), so a table's stamp names the commit that summarised the
log, and each run's own commit is in the log (rows without one predate the field).

    POLYMODAL_DATA=../shared/data python benchmarks/robustness.py             # everything
    POLYMODAL_DATA=../shared/data python benchmarks/robustness.py --datasets har_phone_watch \\
        --fusions early late --balance --seeds 1 --levels 0,0.5                # a slice
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
from typing import Any, Literal

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import commit, merge_records, previous_records, record, write_results
from fusion import PLANS, method_config
from polymodal.inference import evaluate, load_trained
from polymodal.models.build import register_components
from polymodal.robustness import (
    RobustnessRecord,
    drop_modalities,
    explain_dataset,
    parse_levels,
    plot_curves,
    robustness_curves,
    robustness_summary,
)
from polymodal.training import TrainConfig, Trainer
from polymodal.training.config import BalanceConfig, PerturbConfig
from polymodal.training.data import dataset_for_split
from polymodal.training.probe import probe_modalities
from polymodal.training.tasks import build_strategy

REPO = Path(__file__).resolve().parents[1]
NAME = "robustness"
FUSIONS = ("early", "late", "attention", "gmu", "mult")
BALANCE = ("ogm_ge", "gblend", "mla", "unimodal")
# Balance methods whose fused model is evaluated like the fusions (missing modalities,
# Shapley shares, curves) and competes for "best fusion by validation": ``unimodal`` trains
# the fused model itself on each modality alone, i.e. for the missing-modality case; the
# others change how the encoders learn (ogm_ge, gblend's heads are dropped at test) or
# replace the fused prediction (mla), and are measured in the imbalance table only.
ROBUST_BALANCE = ("none", "unimodal")
# Target (c): a balance method raises the weakest encoder's probe accuracy (the lowest under
# plain joint training) by this much, costing at most PROBE_MAX_COST fused accuracy.
PROBE_GAIN, PROBE_MAX_COST = 0.05, 0.003
REFERENCE = "late"  # the effective-robustness reference, as in MultiBench
# Corruption training of the ``<fusion>+perturb`` rows (optim.perturb): half the batches per
# modality, the library's default perturbations and severity range; one setting for all sets.
PERTURB_TRAIN: dict[str, Any] = {"prob": 0.5}
# The families the ``+perturb_some`` rows train on, fixed before their first run (one
# noise-like family per modality, plus blur for images); every other family, and missing,
# is unseen by them.
HOLDOUT_TRAIN: dict[str, dict[str, list[str]]] = {
    "mosi": {"transcript": ["word_drop"], "audio": ["gaussian_noise"]},
    "av_digits": {"audio": ["white_noise"], "image": ["gaussian_noise", "blur"]},
    "har_phone_watch": {"phone": ["gaussian_noise"], "watch": ["gaussian_noise"]},
}
#: Corruption training of a row: none, every default family, or :data:`HOLDOUT_TRAIN`'s.
Perturb = Literal["none", "all", "some"]
PERTURB_SUFFIX = {"none": "", "all": "+perturb", "some": "+perturb_some"}
# Every fused run hides each modality with at least this probability during training (the
# data set's own rate when higher): the missing-modality target asks for one model that also
# works without either modality, so each single-modality path must see enough examples.  A
# smoke run with har_phone_watch's config rate (0.1) lost 17 macro-F1 points without the watch
# against a phone-only model; the floor is one rule for every data set, not tuned per set.
MIN_MODALITY_DROPOUT = 0.3
# Texts kept by the frozen MiniLM's cache: the perturbed test transcripts are the same for
# every fusion of a seed, so one worker encodes each only once.
MINILM_CACHE = 65536


# --------------------------------------------------------------------------- plan


def methods(
    dataset: str,
    fusions: Sequence[str],
    balance: Sequence[str],
    perturb_fusions: Sequence[str] = (),
    holdout_fusions: Sequence[str] = (),
) -> list[tuple[str, tuple[str, ...], str, str, Perturb]]:
    """(method, modalities, fusion, balance, perturb) rows: single modalities, fusions,
    fusions with corruption training (on every family, then on some), balance."""
    mods = tuple(PLANS[dataset]["modalities"])
    rows: list[tuple[str, tuple[str, ...], str, str, Perturb]]
    rows = [(f"only_{m}", (m,), "early", "none", "none") for m in mods]
    rows += [(f, mods, f, "none", "none") for f in fusions]
    rows += [(f + PERTURB_SUFFIX["all"], mods, f, "none", "all") for f in perturb_fusions]
    rows += [(f + PERTURB_SUFFIX["some"], mods, f, "none", "some") for f in holdout_fusions]
    rows += [(f"early+{b}", mods, "early", b, "none") for b in balance]
    return rows


def run_config(
    dataset: str,
    mods: tuple[str, ...],
    fusion: str,
    balance: str,
    seed: int,
    out: str,
    perturb: Perturb = "none",
) -> TrainConfig:
    """``fusion.method_config`` with the balance method, the modality-dropout floor, a
    MiniLM cache for every text and the ``perturb`` corruption training."""
    cfg = method_config(dataset, mods, fusion, seed, out)
    changes: dict[str, Any] = {"optim.balance": {"method": balance}}
    if perturb == "all":
        changes["optim.perturb"] = PERTURB_TRAIN
        changes["name"] = f"{cfg.name}_perturb"
    elif perturb == "some":
        changes["optim.perturb"] = {**PERTURB_TRAIN, "perturbations": HOLDOUT_TRAIN[dataset]}
        changes["name"] = f"{cfg.name}_perturb_some"
    if len(mods) > 1:
        drop = cfg.model.modality_dropout
        changes["model.modality_dropout"] = {
            m: max(drop.get(m, 0.0), MIN_MODALITY_DROPOUT) for m in mods
        }
        if balance in ROBUST_BALANCE:  # the models of the missing-modality table
            changes["monitor_without"] = list(mods)
    for m, enc in cfg.model.encoders.items():
        if enc.name == "minilm":
            changes[f"model.encoders.{m}.params.cache_size"] = MINILM_CACHE
    if balance != "none":
        changes["name"] = f"{cfg.name}_{balance}"
    return cfg.replace(**changes)


#: Config fields added since the logged runs (commit a32352f), with their defaults: left
#: out of a run's hash while they hold the default, so the logged runs, which ran with that
#: behaviour, are still reused; a field set to anything else changes the hash.
HASH_SKIPS_DEFAULT: dict[str, Any] = {
    "compile": False,
    "min_epochs": 0,
    "monitor_without": [],
    "data.shards": None,
    "distributed": {
        "parallel": "ddp",
        "find_unused": True,
        "gather_with_grad": True,
        "local_loss": True,
    },
    "optim.time_limit": None,
    "optim.lr_scale": {},
    "optim.layer_decay": None,
    "optim.balance.unimodal_weight": BalanceConfig().unimodal_weight,
    "optim.perturb": PerturbConfig().to_dict(),
    "data.split_seed": None,
    "optim.balance.mla_fusion": BalanceConfig().mla_fusion,
}


def run_key(
    dataset: str,
    mods: tuple[str, ...],
    fusion: str,
    balance: str,
    seed: int,
    evals: dict,
    perturb: Perturb = "none",
) -> str:
    """A short hash of one run's config and evaluation settings (a logged run is reused
    only when both are unchanged)."""
    cfg = run_config(dataset, mods, fusion, balance, seed, "runs", perturb).to_dict()
    for dotted in HASH_SKIPS_DEFAULT:  # fields newer than the log, hashed only when set
        *parents, leaf = dotted.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        if leaf in node and node[leaf] == HASH_SKIPS_DEFAULT[dotted]:
            del node[leaf]
    blob = json.dumps({"config": cfg, "evals": evals}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- one run


def run_one(
    dataset: str,
    method: str,
    mods: tuple[str, ...],
    fusion: str,
    balance: str,
    perturb: Perturb,
    seed: int,
    levels: list[float],
) -> dict[str, Any]:
    """Train one run and measure it; returns plain data (metrics and curve points)."""
    torch.set_num_threads(1)
    fused = len(mods) > 1
    with tempfile.TemporaryDirectory() as tmp:
        cfg = run_config(dataset, mods, fusion, balance, seed, tmp, perturb)
        t0 = time.perf_counter()
        res = Trainer(cfg, build_strategy(cfg)).fit()
        train_s = time.perf_counter() - t0
        trained = load_trained(res.checkpoint)
        splits = {s: dataset_for_split(cfg.data, cfg.seed, s) for s in ("train", "val", "test")}
        test = splits["test"]
        task = trained.schema.target.task
        size = cfg.data.batch_size

        def scores(transform: Any = None) -> dict[str, float]:
            m = evaluate(
                trained.model, test, task, "cpu", size, trained.precision, transform=transform
            )
            return {"accuracy": float(m["accuracy"]), "macro_f1": float(m["macro_f1"])}

        assert res.best_val is not None
        out: dict[str, Any] = {
            "metrics": scores(),
            "val": float(res.best_val[cfg.selection_metric]),
            "epochs": res.epochs_run,
            "train_seconds": train_s,
        }
        if fused:
            out["probe"] = probe_modalities(
                trained, splits["train"], splits["val"], test, batch_size=size
            )
        if fused and balance in ROBUST_BALANCE:
            for m in mods:
                dropped = scores(lambda b, m=m: drop_modalities(b, [m]))
                out["metrics"].update({f"{k}_without_{m}": v for k, v in dropped.items()})
            report = explain_dataset(trained.model, test, size, modalities=list(mods))
            out["shapley"] = dict(zip(report.modalities, report.share.tolist(), strict=True))
            out["shapley_efficiency_error"] = report.efficiency_error
            curves = robustness_curves({method: trained}, {method: test}, levels=levels, seeds=1)
            out["curves"] = [r.to_dict() for r in curves]
        out["seconds"] = time.perf_counter() - t0
        return out


def _init_worker() -> None:
    torch.set_num_threads(1)


# --------------------------------------------------------------------------- summary


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    vals = [float(v) for v in values]
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def summarise(
    dataset: str,
    plan: dict[str, tuple[tuple[str, ...], str, str, Perturb]],
    runs: dict[str, list[dict]],
) -> list[dict[str, Any]]:
    """Records of one data set: per-method metrics, robustness scores and curve points."""
    out: list[dict[str, Any]] = []

    def rec(method: str, metric: str, vals: Sequence[float], secs: float, **extra: Any) -> None:
        mean, std = _mean_std(vals)
        mods, fusion, balance, perturb = plan[method]
        if perturb != "none":
            extra["training"] = PERTURB_SUFFIX[perturb][1:]
        out.append(
            record(
                NAME,
                dataset,
                method,
                metric,
                mean,
                std=std,
                n_seeds=len(vals),
                seconds=secs,
                modalities="+".join(mods),
                fusion=fusion,
                balance=balance,
                **extra,
            )
        )

    for method, seed_runs in runs.items():
        secs = statistics.mean(r["seconds"] for r in seed_runs)
        for metric in seed_runs[0]["metrics"]:
            rec(method, metric, [r["metrics"][metric] for r in seed_runs], secs)
        rec(method, "val_score", [r["val"] for r in seed_runs], secs)
        for key, prefix in (("probe", "probe_accuracy_"), ("shapley", "shapley_")):
            for m in seed_runs[0].get(key, {}):
                rec(method, prefix + m, [r[key][m] for r in seed_runs], secs)
    # robustness: per seed, relative and effective robustness of every curve (reference:
    # late fusion of the same seed), then per method the mean over its curves
    curved = [m for m, rs in runs.items() if "curves" in rs[0]]
    n_seeds = min((len(runs[m]) for m in curved), default=0)
    per: dict[tuple[str, str, str, str], list[float]] = {}
    for s in range(n_seeds):
        records = [RobustnessRecord(**c) for m in curved for c in runs[m][s]["curves"]]
        for metric in ("accuracy", "macro_f1"):
            if not any(r.metric == metric for r in records):
                continue
            reference = REFERENCE if REFERENCE in curved else None
            for row in robustness_summary(records, metric, reference):
                for score in ("relative_robustness", "effective_robustness"):
                    if row[score] is None:
                        continue
                    key = (row["run"], row["modality"], row["perturbation"], metric + ":" + score)
                    per.setdefault(key, []).append(row[score])
                    agg = (row["run"], "all", "all", metric + ":" + score + f":{s}")
                    per.setdefault(agg, []).append(row[score])
                    seen = HOLDOUT_TRAIN.get(dataset, {}).get(row["modality"], [])
                    if score == "effective_robustness" and row["perturbation"] not in seen:
                        unseen = (row["run"], "unseen", "unseen", f"{metric}:{score}:{s}")
                        per.setdefault(unseen, []).append(row[score])
    for (method, modality, pert, what), vals in sorted(per.items()):
        metric, score = what.split(":")[:2]
        if modality in ("all", "unseen"):  # mean over curves for one seed -> one per seed
            continue
        name = score if metric == "accuracy" else f"{metric}_{score}"
        rec(method, name, vals, 0.0, modality=modality, perturbation=pert)
    for method in curved:
        for metric in ("accuracy", "macro_f1"):
            for score in ("relative_robustness", "effective_robustness"):
                seeds = [
                    statistics.mean(per[(method, "all", "all", f"{metric}:{score}:{s}")])
                    for s in range(n_seeds)
                    if (method, "all", "all", f"{metric}:{score}:{s}") in per
                ]
                if seeds:
                    name = score if metric == "accuracy" else f"{metric}_{score}"
                    rec(method, name, seeds, 0.0, modality="all", perturbation="all")
            # the families +perturb_some did not train on: one value per seed
            key = f"{metric}:effective_robustness"
            seeds = [
                statistics.mean(per[(method, "unseen", "unseen", f"{key}:{s}")])
                for s in range(n_seeds)
                if (method, "unseen", "unseen", f"{key}:{s}") in per
            ]
            if seeds and dataset in HOLDOUT_TRAIN:
                name = (
                    "effective_robustness"
                    if metric == "accuracy"
                    else f"{metric}_effective_robustness"
                )
                rec(method, f"{name}_unseen", seeds, 0.0, modality="all", perturbation="unseen")
    # curve points: mean and std over training seeds
    points: dict[tuple[str, str, str, str, float], list[float]] = {}
    for method in curved:
        for r in runs[method]:
            for c in r["curves"]:
                key = (method, c["modality"], c["perturbation"], c["metric"], c["severity"])
                points.setdefault(key, []).append(c["value"])
    for (method, modality, pert, metric, severity), vals in points.items():
        rec(method, metric, vals, 0.0, modality=modality, perturbation=pert, severity=severity)
    return out


def curve_records(records: Sequence[dict[str, Any]], dataset: str) -> list[RobustnessRecord]:
    """The accuracy curve points of one data set, for :func:`plot_curves`."""
    return [
        RobustnessRecord(
            r["method"],
            r["modality"],
            r["perturbation"],
            r["severity"],
            r["metric"],
            r["value"],
            r["std"] or 0.0,
            r["n_seeds"],
        )
        for r in records
        if r["dataset"] == dataset and "severity" in r
    ]


def _get(records: Sequence[dict[str, Any]], dataset: str, method: str, metric: str) -> dict | None:
    for r in records:
        if (r["dataset"], r["method"], r["metric"]) == (dataset, method, metric) and (
            r.get("modality") in (None, "all") and "severity" not in r
        ):
            return r
    return None


def _pm(r: dict | None, scale: float = 100.0, signed: bool = False) -> str:
    if r is None:
        return ""
    std = r["std"] if r["std"] is not None else 0.0
    sign = "+" if signed else ""
    return f"{r['value'] * scale:{sign}.1f} ± {std * scale:.1f}"


def tables(records: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    """The markdown summary tables and the targets' verdicts."""
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    lines: list[str] = []
    verdicts: list[str] = []
    # 1. fusions: clean, without each modality, robustness, Shapley
    lines += [
        "### Fusions (test, percent, mean ± std over seeds)",
        "",
        "| dataset | method | val | accuracy | macro_f1 | without | acc. without | "
        "F1 without | probe acc. | Shapley share | rel. rob. | eff. rob. vs late |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for ds in datasets:
        mods = list(PLANS[ds]["modalities"])
        fused = [
            m
            for m in dict.fromkeys(r["method"] for r in records if r["dataset"] == ds)
            if _get(records, ds, m, "relative_robustness") is not None
        ]
        for method in fused:
            for i, m in enumerate(mods):
                g = lambda k, ds=ds, method=method: _get(records, ds, method, k)  # noqa: E731
                head = (
                    f"| {ds} | {method} | {_pm(g('val_score'))} | {_pm(g('accuracy'))} | "
                    f"{_pm(g('macro_f1'))} |"
                    if i == 0
                    else "| | | | | |"
                )
                tail = (
                    f" {_pm(g('relative_robustness'))} | "
                    f"{_pm(g('effective_robustness'), signed=True)} |"
                    if i == 0
                    else " | |"
                )
                lines.append(
                    f"{head} {m} | {_pm(g(f'accuracy_without_{m}'))} | "
                    f"{_pm(g(f'macro_f1_without_{m}'))} | {_pm(g(f'probe_accuracy_{m}'))} | "
                    f"{_pm(g(f'shapley_{m}'))} |{tail}"
                )
        for m in mods:
            r = _get(records, ds, f"only_{m}", "accuracy")
            f = _get(records, ds, f"only_{m}", "macro_f1")
            lines.append(f"| {ds} | only_{m} | | {_pm(r)} | {_pm(f)} | | | | | | | |")
    # 2. imbalance
    lines += [
        "",
        "### Imbalance (early fusion; test accuracy and each encoder's linear-probe accuracy)",
        "",
        "| dataset | balance | accuracy | probe accuracy per modality |",
        "| --- | --- | --- | --- |",
    ]
    for ds in datasets:
        for method in ["early"] + [
            m
            for m in dict.fromkeys(r["method"] for r in records if r["dataset"] == ds)
            if m.startswith("early+") and "+perturb" not in m
        ]:
            acc = _get(records, ds, method, "accuracy")
            if acc is None:
                continue
            probes = ", ".join(
                f"{m} {_pm(_get(records, ds, method, f'probe_accuracy_{m}'))}"
                for m in PLANS[ds]["modalities"]
            )
            balance = method.split("+", 1)[1] if "+" in method else "none"
            lines.append(f"| {ds} | {balance} | {_pm(acc)} | {probes} |")
    # 3. targets
    for ds in datasets:
        fused = [
            m
            for m in dict.fromkeys(r["method"] for r in records if r["dataset"] == ds)
            if _get(records, ds, m, "relative_robustness") is not None
        ]
        if not fused:
            continue
        candidates = [m for m in fused if not m.endswith("+perturb_some")]
        best = max(candidates, key=lambda m: _get(records, ds, m, "val_score")["value"])  # type: ignore[index]
        metric = "macro_f1" if ds == "har_phone_watch" else "accuracy"
        for m, other in zip(
            PLANS[ds]["modalities"], reversed(PLANS[ds]["modalities"]), strict=True
        ):
            without = _get(records, ds, best, f"{metric}_without_{m}")
            alone = _get(records, ds, f"only_{other}", metric)
            if without is None or alone is None:
                continue
            gap = without["value"] - alone["value"]
            ok = gap >= -0.01 - 1e-9  # "within 1 point", inclusive
            verdicts.append(
                f"- {ds}, best fusion by validation = {best}: {metric} without {m} "
                f"{without['value'] * 100:.1f} vs only_{other} {alone['value'] * 100:.1f} "
                f"({gap * 100:+.1f} points): {'meets' if ok else 'misses'} the 1-point target"
            )
        some = [m for m in fused if m.endswith("+perturb_some")]
        for m in some:
            base = m[: -len("+perturb_some")]
            parts = []
            for name in (base, f"{base}+perturb", m):
                r = _get(records, ds, name, "effective_robustness_unseen")
                if r is not None:
                    parts.append(f"{name} {_pm(r, signed=True)}")
            families = "; ".join(f"{k}: {', '.join(v)}" for k, v in HOLDOUT_TRAIN[ds].items())
            verdicts.append(
                f"- {ds}: effective robustness on the families {m} did not train on "
                f"(it trained on {families}): " + ", ".join(parts)
            )
        eff = _get(records, ds, best, "effective_robustness")
        if eff is not None and best != REFERENCE:
            verdicts.append(
                f"- {ds}: effective robustness of {best} against late fusion "
                f"{eff['value'] * 100:+.2f} points (mean over its curves)"
            )
        plain = {
            m: _get(records, ds, "early", f"probe_accuracy_{m}") for m in PLANS[ds]["modalities"]
        }
        acc = _get(records, ds, "early", "accuracy")
        if acc is None or any(v is None for v in plain.values()):
            continue
        weak = min(plain, key=lambda m: plain[m]["value"])  # type: ignore[index]
        for method in dict.fromkeys(r["method"] for r in records if r["dataset"] == ds):
            probe = _get(records, ds, method, f"probe_accuracy_{weak}")
            bal = _get(records, ds, method, "accuracy")
            imbalance = method.startswith("early+") and "+perturb" not in method
            if not imbalance or probe is None or bal is None:
                continue
            gain = probe["value"] - plain[weak]["value"]  # type: ignore[index]
            cost = acc["value"] - bal["value"]
            ok = gain >= PROBE_GAIN - 1e-9 and cost <= PROBE_MAX_COST + 1e-9
            verdicts.append(
                f"- {ds}, {method}: probe accuracy of the weakest encoder ({weak}) "
                f"{gain * 100:+.1f} points over plain early fusion, fused accuracy "
                f"{-cost * 100:+.1f}: {'meets' if ok else 'misses'} the imbalance target "
                f"(>= +{PROBE_GAIN * 100:.0f}, >= -{PROBE_MAX_COST * 100:.1f})"
            )
    return "\n".join(lines), verdicts


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(PLANS), choices=list(PLANS))
    ap.add_argument("--fusions", nargs="+", default=list(FUSIONS))
    ap.add_argument(
        "--perturb-fusions",
        nargs="*",
        default=None,
        help="fusions also trained with corruption training (default: those of --fusions)",
    )
    ap.add_argument(
        "--holdout-fusions",
        nargs="*",
        default=[],
        help="fusions also trained on HOLDOUT_TRAIN's perturbation families only",
    )
    ap.add_argument("--balance", nargs="*", default=list(BALANCE), choices=list(BALANCE))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--levels", default="0:0.9:0.1", help="severities (start:stop:step or a,b,c)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--fresh", action="store_true", help="ignore logged runs")
    args = ap.parse_args(argv)
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    register_components()
    levels = parse_levels(args.levels)
    evals = {"levels": levels, "version": 1}
    results_dir = Path(args.results_dir) if args.results_dir else REPO / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    log = results_dir / f"{NAME}_runs.jsonl"
    if args.fresh and log.exists():
        log.unlink()

    perturb_fusions = args.fusions if args.perturb_fusions is None else args.perturb_fusions
    plans: dict[str, dict[str, tuple[tuple[str, ...], str, str, Perturb]]] = {}
    tasks = []
    for ds in args.datasets:
        plans[ds] = {}
        for method, mods, fusion, balance, perturb in methods(
            ds, args.fusions, args.balance, perturb_fusions, args.holdout_fusions
        ):
            plans[ds][method] = (mods, fusion, balance, perturb)
            tasks += [(ds, method, mods, fusion, balance, perturb, s) for s in range(args.seeds)]
    keys = {(t[0], t[1], t[6]): run_key(t[0], t[2], t[3], t[4], t[6], evals, t[5]) for t in tasks}
    results: dict[str, dict[str, dict[int, dict]]] = {ds: {} for ds in args.datasets}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            key = (row["dataset"], row["method"], int(row["seed"]))
            if keys.get(key) == row.get("config"):
                results[key[0]].setdefault(key[1], {})[key[2]] = row["result"]
    todo = [t for t in tasks if t[6] not in results[t[0]].get(t[1], {})]
    print(f"{len(tasks)} runs, {len(tasks) - len(todo)} already logged in {log}", flush=True)
    t_start = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=args.jobs, mp_context=get_context("spawn"), initializer=_init_worker
    ) as pool:
        futures = {pool.submit(run_one, *t, levels): t for t in todo}
        for fut in as_completed(futures):
            ds, method, _mods, _fusion, _balance, _perturb, seed = futures[fut]
            r = fut.result()
            results[ds].setdefault(method, {})[seed] = r
            with log.open("a") as fh:
                row = {"dataset": ds, "method": method, "seed": seed, "result": r}
                row["commit"] = commit()  # the code this run was trained with
                row["config"] = keys[(ds, method, seed)]
                fh.write(json.dumps(row) + "\n")
            print(
                f"{ds:16} {method:16} seed {seed}: test acc {r['metrics']['accuracy']:.4f} "
                f"f1 {r['metrics']['macro_f1']:.4f} val {r['val']:.4f} {r['seconds']:.0f} s  "
                f"[{time.perf_counter() - t_start:.0f} s]",
                flush=True,
            )
    total = time.perf_counter() - t_start
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = child.ru_utime + child.ru_stime

    records: list[dict[str, Any]] = []
    for ds in args.datasets:
        runs = {m: [by_seed[s] for s in sorted(by_seed)] for m, by_seed in results[ds].items()}
        records += summarise(ds, plans[ds], runs)
    records = merge_records(previous_records(NAME, results_dir), records, key=("dataset",))
    figures = []
    for ds in dict.fromkeys(r["dataset"] for r in records):
        points = curve_records(records, ds)
        if points:
            try:
                plot_curves(points, results_dir / f"{NAME}_{ds}.png", "accuracy")
                figures.append(f"{NAME}_{ds}.png")
            except ImportError as e:
                print(f"no figure: {e}", file=sys.stderr)
    summary, verdicts = tables(records)
    print(summary)
    print("\n".join(verdicts))
    write_results(
        NAME,
        records,
        title="Robustness benchmark: noisy and missing modalities, imbalance, Shapley",
        notes=(
            summary
            + "\n\n### Targets\n\n"
            + "\n".join(verdicts)
            + "\n\nrel. rob.: relative robustness, the mean accuracy over severities "
            f"{levels[0]:g}..{levels[-1]:g} (trapezoids), averaged over every (modality, "
            "perturbation) curve; eff. rob.: the mean of (accuracy - late fusion's accuracy "
            "shifted to this run's clean accuracy), likewise (see polymodal/robustness/"
            "curves.py for where these differ from MultiBench's sums and min-max "
            "normalisation). Shapley share: the modality's share of mean |phi| of the "
            "predicted class's probability."
            + f"\n\nThis run: {total / 60:.1f} min wall, {cpu / 60:.1f} min of worker CPU "
            f"time ({len(todo)} runs; {args.jobs} worker processes of 1 thread each)."
            + ("\n\nCurves: " + ", ".join(figures) if figures else "")
        ),
        results_dir=args.results_dir,
        table_records=[
            r for r in records if "severity" not in r and r.get("modality") in (None, "all")
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
