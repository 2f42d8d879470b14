"""``polymodal explain``: each modality's contribution to a trained model, by exact Shapley
values (:mod:`polymodal.robustness.shapley`).

* ``explain RUN [--split test] [--target predicted|true|logit] [--batch-size N] [-o DIR]``:
  rebuild the run's split the way ``polymodal evaluate`` does, compute every example's
  Shapley value per modality, print the per-modality table and write ``DIR/shapley.json``
  (summary and per-example records), ``DIR/shapley.md`` (the table) and
  ``DIR/shapley.png`` (mean |phi| per modality with standard-error bars).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from polymodal.cli.main import CLIError
from polymodal.cli.train import _add_runtime_args, _batch_size, run_split

#: ``polymodal.robustness.shapley``'s ``TARGETS`` and ``MAX_MODALITIES``, restated so the
#: parser needs no torch (tests/cli/test_fast_cli.py keeps them equal)
TARGETS = ("predicted", "true", "logit")
MAX_MODALITIES = 6


def add_parser(subparsers: Any) -> None:
    """Register ``explain`` on the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "explain",
        help="each modality's contribution to a trained model (exact Shapley values)",
        description="Exact Shapley values of each modality over the examples of one split: "
        "the model runs on all 2^M subsets of its modalities (absent ones marked missing, as "
        f"in the data; M <= {MAX_MODALITIES}).",
    )
    p.add_argument("checkpoint", metavar="RUN", help="runs/NAME or a checkpoint folder")
    p.add_argument(
        "--split",
        default="test",
        help="test, val or train as the run split them, or a split name of the data set "
        "(default: test)",
    )
    p.add_argument(
        "--target",
        default="predicted",
        choices=TARGETS,
        help="the value explained: probability of the predicted class (default), of the true "
        "class, or the predicted class's logit; regression explains the prediction",
    )
    p.add_argument(
        "--modalities",
        nargs="+",
        default=None,
        help="modalities to explain (default: all the model encodes); as in robustness",
    )
    p.add_argument(
        "-o",
        "--output",
        default="explain",
        help="folder for shapley.json/.md/.png (default: explain)",
    )
    _add_runtime_args(p)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from polymodal.checkpoint import atomic_write_text
    from polymodal.device import resolve_device
    from polymodal.inference import load_trained
    from polymodal.robustness.shapley import explain_dataset, format_table, plot_shapley

    trained = load_trained(args.checkpoint)
    if trained.task != "supervised":
        raise CLIError(
            f"explain takes a supervised run; {trained.path} is a {trained.task!r} run. Pass "
            "the folder of a run trained with task: supervised."
        )
    schema = trained.schema
    modalities = _modalities(args.modalities, list(getattr(trained.model, "names", [])))
    if schema.target.task == "multilabel":
        raise CLIError(
            f"explain explains one number per example; run {trained.path} is multilabel. "
            "Explain a classification or regression run."
        )
    if args.target == "true" and schema.target.task == "regression":
        raise CLIError(
            "--target true explains the probability of the true class; run "
            f"{trained.path} is a regression run. Use --target predicted."
        )
    dataset = run_split(trained, args.split)
    if args.target == "true" and schema.target.task == "none":
        raise CLIError(f"--target true needs labels; split {args.split!r} has none.")
    report = explain_dataset(
        trained.model,
        dataset,
        _batch_size(args, trained.batch_size),
        args.target,
        modalities=modalities,
        device=resolve_device(args.device, "--device"),
        precision=trained.precision,
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    table = format_table(report)
    head = (
        f"checkpoint {trained.path}, split {args.split!r}: Shapley values of "
        f"{len(report.modalities)} modalities over {len(report.ids)} examples"
    )
    payload = {
        "checkpoint": str(trained.path),
        "split": args.split,
        **report.summary(),
        "records": report.records(schema.target.class_names),
    }
    atomic_write_text(out / "shapley.json", json.dumps(payload, indent=1) + "\n")
    atomic_write_text(out / "shapley.md", f"# Modality Shapley values\n\n{head}\n\n{table}\n")
    plot_shapley(report, out / "shapley.png", f"{trained.path.parent.parent.name} ({args.split})")
    print(head)
    print(table)
    print(f"wrote {out / 'shapley.json'}, shapley.md and shapley.png")
    return 0


def _modalities(option: list[str] | None, encoded: list[str]) -> list[str] | None:
    """The ``--modalities`` list, each checked against the modalities the model encodes."""
    if option is None:
        return None
    from polymodal.errors import did_you_mean

    # "a b" as robustness takes them, and "a,b" too
    names = [n.strip() for item in option for n in item.split(",") if n.strip()]
    for n in names:
        if n not in encoded:
            raise CLIError(
                f"--modalities names {n!r}, which the model does not encode; it encodes "
                f"{', '.join(encoded)}." + did_you_mean(n, encoded)
            )
    return names


__all__ = ["add_parser", "cmd_explain"]
