"""Evaluation reports: per-class scores, the confusion matrix, calibration, residuals.

:func:`classification_report` and :func:`regression_report` turn a model's raw outputs on a
labelled split into plain numbers (JSON-ready); :func:`write_report` draws the figures
(confusion matrix and reliability diagram, or predicted-against-true and residuals) and,
on request, one self-contained HTML page with every table and figure.  ``polymodal
evaluate RUN -o DIR [--html]`` writes them.

Calibration follows Guo et al. (2017): the top-class confidence is binned into equal-width
bins; a bin's gap is |accuracy - mean confidence|, and the expected calibration error (ECE)
is the mean gap weighted by the bins' shares of the examples.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: Equal-width confidence bins of the reliability diagram and the ECE.
CALIBRATION_BINS = 15


@dataclass
class ClassScores:
    """One class: precision, recall, F1 and support (true examples)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class ClassificationReport:
    """What a classifier got right and wrong on a split.

    Attributes:
        classes: per-class scores, in class order.
        confusion: (C, C) counts, row = true class, column = predicted class.
        accuracy, macro_f1, weighted_f1: over all examples.
        ece: expected calibration error of the top-class confidence.
        bins: per confidence bin (``lo``, ``hi``, ``count``, ``confidence``, ``accuracy``).
    """

    classes: list[ClassScores]
    confusion: list[list[int]]
    accuracy: float
    macro_f1: float
    weighted_f1: float
    ece: float
    bins: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"task": "classification", **asdict(self)}


@dataclass
class RegressionReport:
    """How far a regressor's predictions are from the truth.

    Attributes:
        mae, rmse, pearson_r: over all examples.
        residual_mean, residual_std: of ``prediction - target``.
        predictions, targets: the N values (for the figures).
    """

    mae: float
    rmse: float
    pearson_r: float
    residual_mean: float
    residual_std: float
    predictions: list[float]
    targets: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"task": "regression", **asdict(self)}


def classification_report(
    outputs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None
) -> ClassificationReport:
    """The report of (N, C) ``outputs`` (logits) against (N,) class ids ``targets``.

    Shape:
        - outputs: (N, C) logits; targets: (N,) long
    """
    if outputs.dim() != 2 or targets.dim() != 1 or len(outputs) != len(targets):
        raise ValueError(
            f"classification_report needs (N, C) logits and (N,) targets; got "
            f"{tuple(outputs.shape)} and {tuple(targets.shape)}."
        )
    if len(targets) == 0:
        raise ValueError("classification_report: the split has no examples.")
    c = outputs.shape[1]
    names = list(class_names) if class_names else [str(k) for k in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for {c} classes: {names}.")
    probs = torch.softmax(outputs.double(), dim=-1)  # (N, C)
    conf, preds = probs.max(dim=-1)  # (N,)
    t = targets.long()
    confusion = torch.bincount(t * c + preds, minlength=c * c).reshape(c, c)  # (C, C)
    tp = confusion.diagonal().double()
    predicted = confusion.sum(0).double()
    support = confusion.sum(1).double()
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(
        denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(tp)
    )
    present = support > 0
    classes = [
        ClassScores(names[k], float(precision[k]), float(recall[k]), float(f1[k]), int(support[k]))
        for k in range(c)
    ]
    correct = (preds == t).double()
    bins: list[dict[str, float]] = []
    ece = 0.0
    edges = torch.linspace(0, 1, CALIBRATION_BINS + 1, dtype=torch.float64)
    for i in range(CALIBRATION_BINS):
        lo, hi = float(edges[i]), float(edges[i + 1])
        inside = (conf > lo) & (conf <= hi) if i else (conf >= lo) & (conf <= hi)
        n = int(inside.sum())
        row = {"lo": lo, "hi": hi, "count": float(n), "confidence": math.nan, "accuracy": math.nan}
        if n:
            row["confidence"] = float(conf[inside].mean())
            row["accuracy"] = float(correct[inside].mean())
            ece += n / len(t) * abs(row["accuracy"] - row["confidence"])
        bins.append(row)
    return ClassificationReport(
        classes=classes,
        confusion=confusion.tolist(),
        accuracy=float(correct.mean()),
        macro_f1=float(f1[present | (predicted > 0)].mean()),
        weighted_f1=float((f1 * support).sum() / support.sum()),
        ece=ece,
        bins=bins,
    )


def regression_report(predictions: Tensor, targets: Tensor) -> RegressionReport:
    """The report of (N,) ``predictions`` against (N,) ``targets``."""
    p, t = predictions.double().reshape(-1), targets.double().reshape(-1)
    if len(p) != len(t) or len(p) == 0:
        raise ValueError(
            f"regression_report needs as many predictions as targets (and some); got {len(p)} "
            f"and {len(t)}."
        )
    r = p - t
    pc, tc = p - p.mean(), t - t.mean()
    denom = math.sqrt(float((pc * pc).sum()) * float((tc * tc).sum()))
    return RegressionReport(
        mae=float(r.abs().mean()),
        rmse=float(r.square().mean().sqrt()),
        pearson_r=float((pc * tc).sum()) / denom if denom else 0.0,
        residual_mean=float(r.mean()),
        residual_std=float(r.std(unbiased=False)),
        predictions=p.tolist(),
        targets=t.tolist(),
    )


def format_classes(report: ClassificationReport) -> str:
    """The per-class table as text (one row per class, then the averages)."""
    width = max(8, *(len(c.name) for c in report.classes))
    lines = [f"{'class':<{width}}  precision  recall      f1  support"]
    for c in report.classes:
        lines.append(
            f"{c.name:<{width}}  {c.precision:9.4f}  {c.recall:6.4f}  {c.f1:6.4f}  {c.support:7d}"
        )
    total = sum(c.support for c in report.classes)
    lines.append(
        f"{'accuracy':<{width}}  {'':9}  {'':6}  {report.accuracy:6.4f}  {total:7d}\n"
        f"{'macro':<{width}}  {'':9}  {'':6}  {report.macro_f1:6.4f}\n"
        f"{'weighted':<{width}}  {'':9}  {'':6}  {report.weighted_f1:6.4f}\n"
        f"calibration: ECE {report.ece:.4f} ({CALIBRATION_BINS} bins of top-class confidence)"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def _plot_classification(report: ClassificationReport, out: Path, title: str) -> list[Path]:
    from polymodal.plotting import pyplot, save_figure

    plt = pyplot("the evaluation report")
    names = [c.name for c in report.classes]
    cm = torch.tensor(report.confusion, dtype=torch.float64)
    rows = cm / cm.sum(1, keepdim=True).clamp_min(1)  # recall per true class
    size = min(12.0, 2.5 + 0.45 * len(names))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    if len(names) <= 30:
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i in range(len(names)):
            for j in range(len(names)):
                n = int(cm[i, j])
                if n:
                    dark = rows[i, j] > 0.5
                    ax.text(
                        j,
                        i,
                        str(n),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}confusion matrix (colour: share of the true class)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    paths = [save_figure(fig, out / "confusion.png")]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    used = [b for b in report.bins if b["count"] > 0]
    width = 1.0 / CALIBRATION_BINS
    ax.bar(
        [b["lo"] for b in used],
        [b["accuracy"] for b in used],
        width=width,
        align="edge",
        edgecolor="C0",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top-class confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}reliability (ECE {report.ece:.3f})", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    paths.append(save_figure(fig, out / "reliability.png"))
    return paths


def _plot_regression(report: RegressionReport, out: Path, title: str) -> list[Path]:
    from polymodal.plotting import pyplot, save_figure

    plt = pyplot("the evaluation report")
    p, t = report.predictions, report.targets
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.2))
    lo, hi = min(min(p), min(t)), max(max(p), max(t))
    axes[0].scatter(t, p, s=6, alpha=0.5)
    axes[0].plot([lo, hi], [lo, hi], "k--", linewidth=1)
    axes[0].set_xlabel("true")
    axes[0].set_ylabel("predicted")
    axes[0].set_title(f"{title}predicted vs true (r = {report.pearson_r:.3f})", fontsize=9)
    residuals = [a - b for a, b in zip(p, t, strict=True)]
    axes[1].scatter(p, residuals, s=6, alpha=0.5)
    axes[1].axhline(0, color="k", linestyle="--", linewidth=1)
    axes[1].set_xlabel("predicted")
    axes[1].set_ylabel("residual (predicted - true)")
    axes[1].set_title(f"residuals (MAE {report.mae:.3f}, RMSE {report.rmse:.3f})", fontsize=9)
    fig.tight_layout()
    return [save_figure(fig, out / "regression.png")]


def write_report(
    report: ClassificationReport | RegressionReport,
    out: str | Path,
    title: str = "",
    metrics: dict[str, float] | None = None,
    html_page: bool = False,
) -> list[Path]:
    """Write ``report.json``, the figures and (``html_page``) ``report.html`` into ``out``.

    Returns the paths written.  The HTML links its figures by relative path, so the folder
    can be moved or shared as a whole.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"-o {str(folder)!r} is a file; give a folder for the report.")
    folder.mkdir(parents=True, exist_ok=True)
    from polymodal.checkpoint import atomic_write_text

    data = {"title": title, "metrics": metrics or {}, **report.to_dict()}
    atomic_write_text(folder / "report.json", json.dumps(data, indent=1, default=float) + "\n")
    prefix = f"{title}: " if title else ""
    if isinstance(report, ClassificationReport):
        figures = _plot_classification(report, folder, prefix)
    else:
        figures = _plot_regression(report, folder, prefix)
    written = [folder / "report.json", *figures]
    if html_page:
        atomic_write_text(folder / "report.html", _html(report, figures, title, metrics or {}))
        written.append(folder / "report.html")
    return written


def _html(
    report: ClassificationReport | RegressionReport,
    figures: Sequence[Path],
    title: str,
    metrics: dict[str, float],
) -> str:
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title or 'polymodal evaluation')}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:48%;margin:.5em}</style></head><body>",
        f"<h1>{esc(title or 'Evaluation')}</h1>",
        f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>",
    ]
    if isinstance(report, ClassificationReport):
        body = "".join(
            f"<tr><td>{esc(c.name)}</td><td>{c.precision:.4f}</td><td>{c.recall:.4f}</td>"
            f"<td>{c.f1:.4f}</td><td>{c.support}</td></tr>"
            for c in report.classes
        )
        parts.append(
            "<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th>"
            f"<th>F1</th><th>support</th></tr>{body}</table>"
            f"<p>Expected calibration error: {report.ece:.4f} ({CALIBRATION_BINS} bins).</p>"
        )
    else:
        parts.append(
            f"<p>MAE {report.mae:.4f}, RMSE {report.rmse:.4f}, Pearson r {report.pearson_r:.4f}; "
            f"residuals {report.residual_mean:+.4f} ± {report.residual_std:.4f}.</p>"
        )
    parts += [f"<img src='{esc(p.name)}' alt='{esc(p.stem)}'>" for p in figures]
    parts.append("</body></html>\n")
    return "\n".join(parts)


__all__ = [
    "CALIBRATION_BINS",
    "ClassScores",
    "ClassificationReport",
    "RegressionReport",
    "classification_report",
    "format_classes",
    "regression_report",
    "write_report",
]
