"""A figure of robustness curves: one panel per modality x perturbation, one line per run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from polymodal.robustness.curves import RobustnessRecord


def plot_curves(
    records: Sequence[RobustnessRecord], path: str | Path, metric: str = "accuracy"
) -> Path:
    """Write ``metric`` against severity to ``path`` (PNG; matplotlib's Agg backend), with a
    band of one standard deviation over the seeds; returns ``path``."""
    from polymodal.plotting import pyplot, save_figure

    plt = pyplot("plot_curves")

    points = [r for r in records if r.metric == metric]
    if not points:
        raise ValueError(f"No records of metric {metric!r} to plot.")
    panels = list(dict.fromkeys((r.modality, r.perturbation) for r in points))
    runs = list(dict.fromkeys(r.run for r in points))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True
    )
    for ax, (modality, name) in zip(axes.flat, panels, strict=False):
        for run in runs:
            curve = sorted(
                (r for r in points if (r.run, r.modality, r.perturbation) == (run, modality, name)),
                key=lambda r: r.severity,
            )
            if not curve:
                continue
            x = [r.severity for r in curve]
            y = [r.value for r in curve]
            (line,) = ax.plot(x, y, marker="o", markersize=3, label=run)
            lo = [r.value - r.std for r in curve]
            hi = [r.value + r.std for r in curve]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(f"{modality}: {name}", fontsize=9)
        ax.set_xlabel("severity", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric, fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


__all__ = ["plot_curves"]
