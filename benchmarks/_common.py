"""Helpers shared by every benchmark: records, machine/commit stamps, result files.

A benchmark is a script (``python benchmarks/<name>.py``) that measures something,
prints a table and writes ``benchmarks/results/<name>.{json,md}``.  Scripts import
these helpers as ``from _common import record, write_results`` (the script's folder
is on ``sys.path`` when it runs).

Every measurement is one :func:`record`: a flat dict with the keys in
:data:`RECORD_KEYS` (plus any extras), so results from different benchmarks can be
concatenated and compared.  Metric names are lowercase snake_case and shared across
benchmarks; :data:`METRICS` lists the common ones.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]

RECORD_KEYS = (
    "benchmark",
    "dataset",
    "method",
    "metric",
    "value",
    "std",
    "n_seeds",
    "seconds",
    "machine",
    "commit",
)

# Shared metric names (lowercase snake_case, with an optional @K for retrieval cut-offs);
# higher is better unless noted.
METRICS: dict[str, str] = {
    "accuracy": "fraction of examples classified correctly",
    "macro_f1": "unweighted mean of per-class F1",
    "weighted_f1": "support-weighted mean of per-class F1",
    "auroc": "area under the ROC curve",
    "mae": "mean absolute error (lower is better)",
    "mse": "mean squared error (lower is better)",
    "pearson_r": "Pearson correlation of predictions and targets",
    "i2t_r@1": "image->text recall@1 (percent); likewise i2t_r@5, i2t_r@10",
    "t2i_r@1": "text->image recall@1 (percent); likewise t2i_r@5, t2i_r@10",
    "recall@10": "fraction of the exact top-10 an approximate search returns",
    "queries_per_s": "search throughput in queries per second",
    "samples_per_s": "throughput in examples per second",
    "batches_per_s": "throughput in batches per second",
    "ratio": "a dimensionless ratio of two measurements",
    "requests_per_s": "HTTP requests answered per second (benchmarks/serve_load.py)",
    "p50_ms": "median request latency in milliseconds (lower is better)",
    "p99_ms": "99th-percentile request latency in milliseconds (lower is better)",
    "errors": "requests that failed or were not answered 200 (lower is better)",
    "batching_speedup": "requests/s with dynamic batching / requests/s without",
    "shards_vs_loader": "samples/s read from tar shards / samples/s of the source's loader",
    "speedup_2_processes": "samples/s of 2 data-parallel processes / samples/s of 1",
    "seconds": "wall-clock time (lower is better)",
    "peak_memory_mb": "peak memory in MiB (lower is better)",
}

_METRIC_RE = re.compile(r"^[a-z][a-z0-9_]*(@[0-9]+)?$")


@functools.lru_cache(maxsize=1)
def machine() -> str:
    """One line describing where a benchmark ran: CPU model, cores, torch, CUDA device."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if not cpu:
        cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{cpu}, {cores} cores, torch {torch.__version__}, cuda: {cuda}"


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


#: Folders whose uncommitted changes make a result untraceable to its commit.
TRACKED = ("src", "benchmarks", "configs")


@functools.lru_cache(maxsize=1)
def commit() -> str:
    """The short commit of the checkout, ``<sha>-dirty`` when :data:`TRACKED` folders hold
    uncommitted changes (results files excepted), or ``"unknown"`` outside a checkout."""
    out = _git("rev-parse", "--short", "HEAD")
    sha = out.stdout.strip() if out is not None and out.returncode == 0 else ""
    if not sha:
        return "unknown"
    status = _git("status", "--porcelain", "--untracked-files=all", "--", *TRACKED)
    changed = [] if status is None else status.stdout.splitlines()
    results = RESULTS_DIR.relative_to(REPO_ROOT).as_posix() + "/"
    if any(not line[3:].strip('"').startswith(results) for line in changed):
        return f"{sha}-dirty"
    return sha


def record(
    benchmark: str,
    dataset: str,
    method: str,
    metric: str,
    value: float,
    std: float | None = None,
    n_seeds: int = 1,
    seconds: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One measurement as a flat dict with the keys of :data:`RECORD_KEYS` plus ``extra``.

    Args:
        benchmark: the script's name (``"data_throughput"``).
        dataset: the data set measured on (``"mosi"``).
        method: what was measured (``"early_fusion"``, ``"workers=2"``).
        metric: a lowercase snake_case metric name, ideally one of :data:`METRICS`.
        value: the measurement (mean over seeds when ``n_seeds > 1``).
        std: standard deviation over seeds, or ``None`` for a single run.
        n_seeds: how many seeds/repeats ``value`` averages.
        seconds: wall-clock seconds the measurement took.
        **extra: further columns (``workers=2``, ``batch_size=32``); JSON-serialisable.
    """
    if not isinstance(metric, str) or not _METRIC_RE.match(metric):
        raise ValueError(
            f"record(metric=...) must be a lowercase snake_case name such as "
            f"{', '.join(list(METRICS)[:4])}; got {metric!r}. Rename the metric."
        )
    try:
        value_f = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"record(value=...) must be a number, got {type(value).__name__} {value!r}"
        ) from None
    if n_seeds < 1:
        raise ValueError(f"record(n_seeds=...) must be >= 1, got {n_seeds}")
    out: dict[str, Any] = {
        "benchmark": benchmark,
        "dataset": dataset,
        "method": method,
        "metric": metric,
        "value": value_f,
        "std": None if std is None else float(std),
        "n_seeds": int(n_seeds),
        "seconds": None if seconds is None else float(seconds),
        "machine": machine(),
        "commit": commit(),
    }
    out.update(extra)
    return out


def seed_record(
    benchmark: str,
    dataset: str,
    method: str,
    metric: str,
    values: Sequence[float],
    seconds: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """:func:`record` of the mean of ``values`` (one per seed), their standard deviation
    (``None`` for a single seed) and ``n_seeds = len(values)``."""
    vals = list(values)
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return record(
        benchmark,
        dataset,
        method,
        metric,
        statistics.mean(vals),
        std=std,
        n_seeds=len(vals),
        seconds=seconds,
        **extra,
    )


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    return str(v)


def _table_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    cols = ["dataset", "method", "metric", "value", "std", "n_seeds", "seconds"]
    if len({r.get("benchmark") for r in records}) > 1:
        cols.insert(0, "benchmark")
    for r in records:
        for k in r:
            if k not in RECORD_KEYS and k not in cols:
                cols.append(k)
    return cols


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """``records`` as a markdown table (machine and commit left out: they are per file)."""
    if not records:
        return "(no records)"
    cols = _table_columns(records)
    lines = [
        "| " + " | ".join(cols) + " |",
        "| " + " | ".join("---" for _ in cols) + " |",
    ]
    for r in records:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def print_table(records: Sequence[dict[str, Any]]) -> None:
    """Print ``records`` as a markdown table to stdout."""
    print(format_table(records))


def _command() -> str:
    argv = list(sys.argv)
    if argv:
        with contextlib.suppress(ValueError):
            argv[0] = str(Path(argv[0]).resolve().relative_to(REPO_ROOT))
    return "python " + shlex.join(argv)


def previous_records(
    name: str, results_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """The records of ``<results_dir>/<name>.json`` (default ``benchmarks/results``), or []."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    return list(json.loads(path.read_text())) if path.exists() else []


def merge_records(
    previous: Sequence[dict[str, Any]],
    records: Sequence[dict[str, Any]],
    key: Sequence[str] = ("dataset", "method"),
) -> list[dict[str, Any]]:
    """``records`` after the ``previous`` ones whose ``key`` fields they do not repeat.

    Lets a benchmark re-run some data sets, methods or parts and keep the results of the
    others in the same file.
    """
    fresh = {tuple(r[k] for k in key) for r in records}
    return [r for r in previous if tuple(r[k] for k in key) not in fresh] + list(records)


#: Member k of a seed-s ensemble is seeded s + ENSEMBLE_STRIDE * k (baselines.py, context.py).
ENSEMBLE_STRIDE = 100


def ensemble_scores(
    run_dirs: Sequence[str | os.PathLike[str]], data: Any, seed: int
) -> dict[str, dict[str, float]]:
    """Validation and test metrics of the runs' best models as one seed ensemble (the mean
    of their class probabilities, :func:`polymodal.inference.ensemble_predictions`).

    ``data`` (a :class:`~polymodal.training.DataConfig`) and ``seed`` give the splits as the
    runs saw them: the runs must share their validation carve (one ``data.split_seed``).
    Context runs (``task: context``) predict video by video, as ``polymodal evaluate`` does.
    """
    from polymodal.data.context import VideoDataset
    from polymodal.inference import (
        ensemble_predictions,
        load_trained,
        predict,
        predict_videos,
        prediction_metrics,
    )
    from polymodal.training.data import dataset_for_split

    runs = [load_trained(Path(d)) for d in run_dirs]
    scores = {}
    for split in ("val", "test"):
        dataset = dataset_for_split(data, seed, split)
        preds = [
            predict_videos(r.model, VideoDataset(dataset), r.batch_size, "cpu", r.precision)
            if r.task == "context"
            else predict(r.model, dataset, "cpu", r.batch_size, r.precision)
            for r in runs
        ]
        scores[split] = prediction_metrics(
            ensemble_predictions(preds, "classification"), dataset, "classification"
        )
    return scores


def write_results(
    name: str,
    records: Sequence[dict[str, Any]],
    title: str | None = None,
    notes: str = "",
    command: str | None = None,
    results_dir: str | os.PathLike[str] | None = None,
    table_records: Sequence[dict[str, Any]] | None = None,
) -> tuple[Path, Path]:
    """Write ``<results_dir>/<name>.json`` (the records) and ``<name>.md`` (a table).

    The markdown file holds ``title``, the table (of ``table_records`` when given, e.g.
    without the points of curves that a figure shows; default: every record), optional
    ``notes``, the machine, the commit and the command that produced it.  ``results_dir``
    defaults to ``benchmarks/results``.  Returns the two paths.
    """
    if not re.match(r"^[A-Za-z0-9_.-]+$", name):
        raise ValueError(
            f"write_results(name=...) must be a plain file stem (letters, digits, _ . -); "
            f"got {name!r}"
        )
    missing = [
        (i, sorted(set(RECORD_KEYS) - set(r)))
        for i, r in enumerate(records)
        if set(RECORD_KEYS) - set(r)
    ]
    if missing:
        i, keys = missing[0]
        raise ValueError(
            f"write_results: record {i} lacks keys {keys}; build records with record(...)."
        )
    out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    json_path.write_text(json.dumps(list(records), indent=2, allow_nan=True) + "\n")
    machines = sorted({str(r["machine"]) for r in records}) or [machine()]
    commits = sorted({str(r["commit"]) for r in records}) or [commit()]
    shown = records if table_records is None else table_records
    md = [f"# {title or name}", "", format_table(shown), ""]
    if notes:
        md += [notes.strip(), ""]
    md += [
        f"- machine: {'; '.join(machines)}",
        f"- commit: {', '.join(commits)}",
        f"- command: `{command or _command()}`",
        "",
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path
