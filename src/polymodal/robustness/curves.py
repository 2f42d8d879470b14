"""Robustness curves: a trained model's metrics as one modality is corrupted more and more.

:func:`robustness_curves` evaluates each run on its test split, collated once, under every
(modality, perturbation, severity), averaged over perturbation seeds, and returns one
:class:`RobustnessRecord` per point.  :func:`robustness_summary` condenses each curve into
MultiBench's two numbers (Liang et al., 2021, "MultiBench", section 3 and its
``eval_scripts/robustness.py``):

* :func:`relative_robustness`: the area under the metric-vs-severity curve.
* :func:`effective_robustness`: how far the curve stays above a reference curve (late
  fusion in MultiBench) shifted to start at the method's clean metric.

How ours differ from MultiBench's code: MultiBench sums trapezoids of fixed width 0.1 (it
assumes ten levels 0, 0.1, ..., 0.9) for the relative and plain differences level by level
for the effective robustness, and then min-max normalises each number across the methods
it compares (so a method's score depends on the others on the table).  We integrate with
the trapezoid rule over the levels actually used and divide by their span, i.e. the mean
metric over the severity range (in metric units: an accuracy stays in [0, 1]); the
effective robustness is the same mean of ``f - (ref + f[0] - ref[0])``.  Neither is
min-max normalised: that needs the whole table, and :func:`minmax_normalize` does it when
you have one.  Random draws use the same seed at every level and for every run (common
random numbers), so curves are smooth and runs are compared on the same corruptions.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import torch
from tqdm.auto import tqdm

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.sample import Batch
from polymodal.errors import unknown_name_error
from polymodal.inference import TrainedModel, calibrate_groups, data_loader, predict_batches
from polymodal.metrics import compute_metrics
from polymodal.robustness.perturb import PERTURBATIONS, perturb_batch, perturbations_for

DEFAULT_LEVELS = "0:0.9:0.1"
CLASSIFICATION_METRICS = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class RobustnessRecord:
    """One point of a robustness curve.

    Attributes:
        run: the run's name (as given to :func:`robustness_curves`).
        modality: the perturbed modality.
        perturbation: the registered perturbation's name.
        severity: in [0, 1].
        metric: ``accuracy``, ``macro_f1`` (or the task's metrics).
        value: the metric's mean over the seeds.
        std: its standard deviation over the seeds (ddof 1; 0 for one seed or severity 0).
        n_seeds: perturbation seeds averaged.
    """

    run: str
    modality: str
    perturbation: str
    severity: float
    metric: str
    value: float
    std: float
    n_seeds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- formulas


def parse_levels(spec: str) -> list[float]:
    """Severity levels from ``"start:stop:step"`` (``stop`` included) or ``"a,b,c"``.

    >>> parse_levels("0:0.4:0.2")
    [0.0, 0.2, 0.4]
    """
    try:
        if ":" in spec:
            start, stop, step = (float(p) for p in spec.split(":"))
            if step <= 0:
                raise ValueError
            n = math.floor((stop - start) / step + 1e-9) + 1
            levels = [round(start + i * step, 10) for i in range(max(n, 0))]
        else:
            levels = [float(p) for p in spec.split(",") if p.strip()]
    except ValueError:
        raise ValueError(
            f"The 'levels' parameter must be 'start:stop:step' (step > 0, stop included) or a "
            f"comma-separated list of severities in [0, 1], e.g. '0:0.9:0.1'. Got {spec!r}."
        ) from None
    return check_levels(levels)


def check_levels(levels: Sequence[float]) -> list[float]:
    """``levels`` as floats, or a ``ValueError`` unless they are non-empty, strictly
    increasing and within [0, 1]."""
    out = [float(v) for v in levels]
    if not out or any(not 0.0 <= v <= 1.0 for v in out) or any(b <= a for a, b in pairwise(out)):
        raise ValueError(
            "The 'levels' parameter must be a non-empty, strictly increasing list of "
            f"severities in [0, 1]. Got {list(levels)!r} instead."
        )
    return out


def _trapezoid_mean(levels: Sequence[float], values: Sequence[float]) -> float:
    levels = check_levels(levels)
    if len(values) != len(levels):
        raise ValueError(
            f"The 'values' parameter must have one value per level ({len(levels)}). Got "
            f"{len(values)} values instead."
        )
    if len(levels) == 1:
        return float(values[0])
    area = sum(
        (b - a) * (u + v) / 2
        for a, b, u, v in zip(levels, levels[1:], values, values[1:], strict=False)
    )
    return float(area / (levels[-1] - levels[0]))


def relative_robustness(levels: Sequence[float], values: Sequence[float]) -> float:
    """Area under the metric-vs-severity curve (trapezoid rule) over the span of ``levels``.

    ``sum_i (s[i+1] - s[i]) * (v[i] + v[i+1]) / 2 / (s[-1] - s[0])``: the mean metric over
    the severity range (a single level gives its value).  MultiBench sums the same
    trapezoids with a fixed width of 0.1 and then min-max normalises across methods.
    """
    return _trapezoid_mean(levels, values)


def effective_robustness(
    levels: Sequence[float], values: Sequence[float], reference: Sequence[float]
) -> float:
    """How far ``values`` stay above ``reference`` shifted to the same clean metric.

    With ``f = values``, ``r = reference`` (the late-fusion curve in MultiBench) and the
    first level as "clean": the trapezoid mean (as :func:`relative_robustness`) of
    ``f - (r + f[0] - r[0])``.  MultiBench sums these differences over its ten levels
    instead, then min-max normalises across methods.
    """
    if len(reference) != len(values):
        raise ValueError(
            f"The 'reference' parameter must have one value per level, like 'values' "
            f"({len(values)}). Got {len(reference)} values instead."
        )
    shift = values[0] - reference[0]
    return _trapezoid_mean(
        levels, [f - (r + shift) for f, r in zip(values, reference, strict=True)]
    )


def minmax_normalize(scores: Mapping[str, float]) -> dict[str, float]:
    """MultiBench's last step: ``(x - min) / (max - min)`` across the compared methods
    (all 0 when they are equal)."""
    lo, hi = min(scores.values()), max(scores.values())
    return {k: 0.0 if hi == lo else (v - lo) / (hi - lo) for k, v in scores.items()}


# --------------------------------------------------------------------------- evaluation


def _used_modalities(trained: TrainedModel) -> list[str]:
    encoders = trained.config.get("model", {}).get("encoders", {})
    return [m for m in trained.schema.names if m in encoders]


def _plan(
    runs: Mapping[str, TrainedModel],
    modalities: Sequence[str] | None,
    perturbations: Sequence[str] | None,
) -> dict[str, list[tuple[str, str]]]:
    """run -> the (modality, perturbation) pairs to evaluate; checks the names given."""
    for name in perturbations or ():
        PERTURBATIONS.get(name)
    used = {run: _used_modalities(t) for run, t in runs.items()}
    every = sorted({m for ms in used.values() for m in ms})
    for m in modalities or ():
        if m not in every:
            raise unknown_name_error("modality", m, every)
    plan: dict[str, list[tuple[str, str]]] = {}
    applied: set[str] = set()
    for run, trained in runs.items():
        if trained.task != "supervised":
            raise ValueError(
                f"Run {run!r} is a {trained.task!r} run; robustness curves take supervised runs."
            )
        pairs = []
        for m in used[run]:
            if modalities is not None and m not in modalities:
                continue
            valid = perturbations_for(trained.schema[m].kind)
            names = valid if perturbations is None else [p for p in perturbations if p in valid]
            applied.update(names)
            pairs += [(m, p) for p in names]
        plan[run] = pairs
    unused = [p for p in perturbations or () if p not in applied]
    if unused:
        raise ValueError(
            f"The 'perturbations' parameter names {unused}, which apply to none of the chosen "
            f"modalities ({', '.join(modalities or every)}); see polymodal.robustness."
            "perturbations_for(kind) for the ones that do."
        )
    return plan


def _metrics(task: str, outputs: torch.Tensor, targets: torch.Tensor | None) -> dict[str, float]:
    if targets is None:
        raise ValueError("Robustness curves need a labelled split; this one has no targets.")
    scores = compute_metrics(task, outputs, targets)
    keep = [m for m in CLASSIFICATION_METRICS if m in scores] or list(scores)
    return {m: scores[m] for m in keep}


def robustness_curves(
    runs: Mapping[str, TrainedModel],
    datasets: Mapping[str, MultimodalDataset],
    modalities: Sequence[str] | None = None,
    perturbations: Sequence[str] | None = None,
    levels: Sequence[float] | str = DEFAULT_LEVELS,
    seeds: int = 1,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> list[RobustnessRecord]:
    """Metrics of every run as each of its modalities is perturbed at each severity.

    Args:
        runs: run name -> a supervised :class:`~polymodal.inference.TrainedModel`.
        datasets: run name -> the labelled split to evaluate it on (collated once).
        modalities: modalities to perturb (default: every modality each run uses).
        perturbations: registered names (default: every one valid for each modality's
            kind, ``missing`` included); each is applied where the kind allows it.
        levels: severities in [0, 1], or a :func:`parse_levels` string.
        seeds: perturbation seeds 0..seeds-1 averaged at each severity > 0; the same seeds
            are used at every level and for every run.
        batch_size: default: each run's training batch size.
        device: where the models run.
        progress: show a progress bar (on a terminal).

    Returns:
        One record per run, modality, perturbation, severity and metric (``accuracy`` and
        ``macro_f1`` for classification; the task's metrics otherwise).
    """
    levels = parse_levels(levels) if isinstance(levels, str) else check_levels(levels)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"The 'seeds' parameter must be an int >= 1. Got {seeds!r} instead.")
    missing_data = [r for r in runs if r not in datasets]
    if missing_data:
        raise ValueError(f"The 'datasets' parameter has no split for run(s) {missing_data}.")
    plan = _plan(runs, modalities, perturbations)
    total = sum(len(p) * sum(1 if s == 0 else seeds for s in levels) for p in plan.values())
    bar = tqdm(total=total, desc="robustness", disable=not (progress and sys.stderr.isatty()))
    records: list[RobustnessRecord] = []
    try:
        for run, trained in runs.items():
            size = batch_size or trained.batch_size
            calibrate_groups(trained.model, datasets[run], size, device)
            batches = list(data_loader(datasets[run], size))
            task = trained.schema.target.task
            clean: dict[str, float] | None = None
            for modality, name in plan[run]:
                for severity in levels:
                    if severity == 0 and clean is not None:
                        scores = [clean]
                    else:
                        scores = [
                            _evaluate(trained, batches, task, device, modality, name, severity, s)
                            for s in range(1 if severity == 0 else seeds)
                        ]
                        clean = scores[0] if severity == 0 else clean
                    bar.update(len(scores))
                    records += _records(run, modality, name, severity, scores, seeds)
    finally:
        bar.close()
    return records


def _evaluate(
    trained: TrainedModel,
    batches: list[Batch],
    task: str,
    device: torch.device | str,
    modality: str,
    name: str,
    severity: float,
    seed: int,
) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)

    def transform(batch: Batch) -> Batch:
        return perturb_batch(batch, trained.schema, modality, name, severity, generator)

    pred = predict_batches(trained.model, batches, device, trained.precision, transform)
    if pred is None:
        raise ValueError("Robustness curves need a non-empty split; this one has no examples.")
    return _metrics(task, pred.outputs, pred.targets)


def _records(
    run: str, modality: str, name: str, severity: float, scores: list[dict[str, float]], seeds: int
) -> list[RobustnessRecord]:
    out = []
    for metric in scores[0]:
        vals = torch.tensor([s[metric] for s in scores], dtype=torch.float64)
        std = float(vals.std()) if len(vals) > 1 else 0.0
        out.append(
            RobustnessRecord(run, modality, name, severity, metric, float(vals.mean()), std, seeds)
        )
    return out


def robustness_summary(
    records: Sequence[RobustnessRecord], metric: str = "accuracy", reference: str | None = None
) -> list[dict[str, Any]]:
    """Relative (and, given a ``reference`` run, effective) robustness of every curve.

    Returns:
        One dict per (run, modality, perturbation) of ``metric``: ``run``, ``modality``,
        ``perturbation``, ``metric``, ``clean`` (the value at the first level),
        ``relative_robustness`` and ``effective_robustness`` (``None`` without a reference,
        or where the reference has no curve at the same levels).
    """
    curves: dict[tuple[str, str, str], list[RobustnessRecord]] = {}
    for r in records:
        if r.metric == metric:
            curves.setdefault((r.run, r.modality, r.perturbation), []).append(r)
    if reference is not None and all(run != reference for run, _, _ in curves):
        raise unknown_name_error("reference run", reference, sorted({k[0] for k in curves}))
    out = []
    for (run, modality, name), points in curves.items():
        points = sorted(points, key=lambda r: r.severity)
        levels = [p.severity for p in points]
        values = [p.value for p in points]
        effective = None
        ref = curves.get((reference, modality, name)) if reference is not None else None
        if ref is not None:
            ref = sorted(ref, key=lambda r: r.severity)
            if [p.severity for p in ref] == levels:
                effective = effective_robustness(levels, values, [p.value for p in ref])
        out.append(
            {
                "run": run,
                "modality": modality,
                "perturbation": name,
                "metric": metric,
                "clean": values[0],
                "relative_robustness": relative_robustness(levels, values),
                "effective_robustness": effective,
            }
        )
    return out


__all__ = [
    "DEFAULT_LEVELS",
    "RobustnessRecord",
    "check_levels",
    "effective_robustness",
    "minmax_normalize",
    "parse_levels",
    "relative_robustness",
    "robustness_curves",
    "robustness_summary",
]
