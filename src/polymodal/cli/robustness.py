"""``polymodal robustness RUN [RUN ...]``: metrics of trained runs as a modality is corrupted.

Each run is rebuilt from its checkpoint and evaluated on its own split (rebuilt as
``polymodal evaluate`` does) under every perturbation valid for each modality's kind, at
each severity, averaged over perturbation seeds.  Writes ``OUT/robustness.json`` (the
records and a summary with MultiBench's relative and effective robustness) and
``OUT/robustness.png``, and prints a table::

    polymodal robustness runs/early runs/late --reference runs/late --levels 0:0.9:0.1 \\
        --seeds 3 -o runs/robustness
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polymodal.cli.main import CLIError


def add_parser(subparsers: Any) -> None:
    """Register ``robustness`` on the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "robustness",
        help="metrics of trained runs under perturbed or missing modalities",
        description="Evaluate trained runs with each modality perturbed at increasing "
        "severity; writes OUT/robustness.json and OUT/robustness.png and prints a table with "
        "MultiBench's relative and effective robustness.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="runs/NAME or checkpoint folders")
    p.add_argument("--split", default="test", help="the split to evaluate (default: test)")
    p.add_argument("--modalities", nargs="+", default=None, help="default: every one used")
    p.add_argument(
        "--perturbations",
        nargs="+",
        default=None,
        help="registered names (default: every one valid for each modality's kind, and missing)",
    )
    p.add_argument("--levels", default="0:0.9:0.1", help="start:stop:step or a,b,c in [0, 1]")
    p.add_argument("--seeds", type=int, default=1, help="perturbation seeds averaged (default: 1)")
    p.add_argument(
        "--reference",
        default=None,
        metavar="RUN",
        help="the late-fusion run (one of RUN) for the effective robustness",
    )
    p.add_argument("-o", "--output", default="robustness", help="output folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, default=None, help="default: each run's batch size")
    p.set_defaults(func=cmd_robustness)


def _run_names(paths: Sequence[str]) -> list[str]:
    """Short unique names: the folder name, or the path where two share one."""
    names = [Path(p).name or str(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=True)]


def cmd_robustness(args: argparse.Namespace) -> int:
    from polymodal.checkpoint import atomic_write_text
    from polymodal.cli.train import _batch_size, run_split
    from polymodal.device import resolve_device
    from polymodal.inference import load_trained
    from polymodal.robustness import (
        parse_levels,
        plot_curves,
        robustness_curves,
        robustness_summary,
    )

    if args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    levels = parse_levels(args.levels)
    names = _run_names(args.runs)
    reference = None
    if args.reference is not None:
        matches = [n for n, p in zip(names, args.runs, strict=True) if args.reference in (n, p)]
        if not matches:
            raise CLIError(
                f"--reference must be one of the runs given ({', '.join(args.runs)}); got "
                f"{args.reference!r}. Add the late-fusion run to RUN."
            )
        reference = matches[0]
    runs = {n: load_trained(p) for n, p in zip(names, args.runs, strict=True)}
    datasets = {n: run_split(t, args.split) for n, t in runs.items()}
    records = robustness_curves(
        runs,
        datasets,
        args.modalities,
        args.perturbations,
        levels,
        args.seeds,
        None if args.batch_size is None else _batch_size(args, 1),
        resolve_device(args.device, "--device"),
        progress=True,
    )
    metric = "accuracy" if any(r.metric == "accuracy" for r in records) else records[0].metric
    summary = robustness_summary(records, metric, reference)
    out = Path(args.output)
    report = {
        "runs": dict(zip(names, args.runs, strict=True)),
        "split": args.split,
        "levels": levels,
        "seeds": args.seeds,
        "reference": reference,
        "records": [r.to_dict() for r in records],
        "summary": summary,
    }
    atomic_write_text(out / "robustness.json", json.dumps(report, indent=1) + "\n")
    try:
        plot_curves(records, out / "robustness.png", metric)
    except ImportError as e:
        print(f"polymodal robustness: no figure: {e}", file=sys.stderr)
    print(format_summary(records, summary, metric))
    print(f"wrote {out / 'robustness.json'} and {out / 'robustness.png'}")
    return 0


def format_summary(records: Sequence[Any], summary: Sequence[dict[str, Any]], metric: str) -> str:
    """One row per run x modality x perturbation: ``metric`` at each level, then the
    relative (rel) and effective (eff) robustness."""
    levels = sorted({r.severity for r in records if r.metric == metric})
    value = {
        (r.run, r.modality, r.perturbation, r.severity): r.value
        for r in records
        if r.metric == metric
    }
    keys = ("run", "modality", "perturbation")
    widths = [max(len(k), *(len(str(s[k])) for s in summary)) for k in keys]
    head = "  ".join(f"{k:<{w}}" for k, w in zip(keys, widths, strict=True))
    head += "".join(f"  {s:>5.2f}" for s in levels) + f"  {'rel':>6}  {'eff':>6}"
    lines = [f"{metric} by severity", head]
    for s in summary:
        cells = "  ".join(f"{s[k]:<{w}}" for k, w in zip(keys, widths, strict=True))
        for lv in levels:
            v = value.get((s["run"], s["modality"], s["perturbation"], lv))
            cells += f"  {v:>5.3f}" if v is not None else f"  {'-':>5}"
        eff = s["effective_robustness"]
        cells += f"  {s['relative_robustness']:>6.3f}  " + (
            f"{eff:>+6.3f}" if eff is not None else f"{'-':>6}"
        )
        lines.append(cells)
    return "\n".join(lines)


__all__ = ["add_parser", "format_summary"]
