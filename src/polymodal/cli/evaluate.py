"""``polymodal evaluate``: metrics of a trained run (or a seed ensemble of runs) on a split.

The parser is declared with ``train`` and ``predict`` (:mod:`polymodal.cli.train`); this
module holds the command.  ``evaluate RUN [RUN ...] [--split test] [--drop MODALITY ...]
[--probe] [--manifest FILE] [-o DIR [--html]]``: several runs of one task and data are one
ensemble (:func:`polymodal.inference.ensemble_predictions`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polymodal.cli.main import CLIError
from polymodal.cli.train import (
    _batch_size,
    check_manifest_columns,
    format_table,
    model_columns,
    predict_schema,
    run_split,
)

if TYPE_CHECKING:  # torch and the library load in the command, not with the parser
    import torch

    from polymodal.data.dataset import MultimodalDataset
    from polymodal.data.sample import Batch
    from polymodal.inference import TrainedModel


def cmd_evaluate(args: argparse.Namespace) -> int:
    from polymodal.data.context import VideoDataset
    from polymodal.device import resolve_device
    from polymodal.inference import (
        ensemble_predictions,
        load_trained,
        predict,
        predict_videos,
        prediction_metrics,
    )

    runs = [load_trained(path) for path in args.checkpoint]
    trained = runs[0]
    if len(runs) > 1:
        _check_ensemble(runs, args)
    config = trained.config
    device = resolve_device(args.device, "--device")
    dataset = (
        run_split(trained, args.split) if args.manifest is None else _manifest_split(args, trained)
    )
    batch_size = _batch_size(args, trained.batch_size)
    task = trained.schema.target.task
    videos = VideoDataset(dataset) if trained.task == "context" else None  # same task: checked
    preds = []
    for run in runs:
        model, transform = run.model.to(device), _drop_transform(run, args.drop)
        if videos is not None:
            preds.append(
                predict_videos(model, videos, batch_size, device, run.precision, transform)
            )
        else:
            preds.append(
                predict(model, dataset, device, batch_size, run.precision, transform=transform)
            )
    try:
        pred = preds[0] if len(preds) == 1 else ensemble_predictions(preds, task)
    except ValueError as e:
        raise CLIError(str(e)) from e
    loss = str(config.get("optim", {}).get("regression_loss", "mse"))
    metrics = prediction_metrics(pred, dataset, task, loss)
    dropped = f", without {', '.join(args.drop)}" if args.drop else ""
    what = (
        f"checkpoint {trained.path} (epoch {trained.state.get('best_epoch', '?')})"
        if len(runs) == 1
        else f"ensemble of {len(runs)} runs ({', '.join(str(r.path) for r in runs)})"
    )
    print(f"{what}, split {args.split!r}: {len(dataset)} examples{dropped}")
    print(format_table({args.split: metrics}))
    _report(args, trained, pred, metrics)
    if args.probe:
        _print_probe(trained, dataset, metrics, batch_size, device)
    return 0


def _check_ensemble(runs: Sequence[TrainedModel], args: argparse.Namespace) -> None:
    """Several runs are one ensemble only if they predict the same thing from the same data."""
    if args.probe:
        raise CLIError("--probe takes one run; evaluate the runs of an ensemble one at a time.")
    first = runs[0]
    seeds = sorted({_carve_seed(r.config) for r in runs})
    split_from_train = (
        args.split in ("train", "val") and first.config["data"].get("val_split") is None
    )
    if split_from_train and len(seeds) > 1 and args.manifest is None:
        raise CLIError(
            f"The runs carved their {args.split} split from the training data with their own "
            f"seeds ({', '.join(map(str, seeds))}), so each has another one; evaluate the "
            "ensemble on test (--split test) or on a split the data set names, or train the "
            "runs with one data.split_seed so they share their validation split."
        )
    for run in runs[1:]:
        for what, mine, theirs in (
            ("task", first.task, run.task),
            ("target", first.schema.target, run.schema.target),
            ("data", _data_read(first.config), _data_read(run.config)),
        ):
            if mine != theirs:
                raise CLIError(
                    f"An ensemble needs runs of one task and data, but {run.path} has another "
                    f"{what} than {first.path}:\n  {theirs}\n  vs {mine}\nEvaluate them one "
                    "at a time, or ensemble runs that differ only in seed or model."
                )


def _data_read(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's data config but its split seed: what it read, however validation was carved
    (the seeds of the carve are checked where the split is carved from train)."""
    return {k: v for k, v in config.get("data", {}).items() if k != "split_seed"}


def _carve_seed(config: Mapping[str, Any]) -> int:
    """The seed a run carved its validation split with (``data.split_seed``, else ``seed``)."""
    from polymodal.training.config import DataConfig

    data = DataConfig.from_dict(config["data"], "data")
    return data.carve_seed(int(config.get("seed", 0)))


def _manifest_split(args: argparse.Namespace, trained: TrainedModel) -> MultimodalDataset:
    """``--manifest``: a labelled manifest read with the model's schema (as ``predict`` reads
    one, and with its labels, which must be among the model's classes)."""
    from polymodal.data.manifest import ManifestDataset, read_manifest

    if args.split != "test":
        raise CLIError("--manifest and --split exclude each other: the manifest is the split.")
    schema = predict_schema(trained)
    table = read_manifest(args.manifest)
    check_manifest_columns(table.columns, model_columns(schema), str(args.manifest))
    args.split = Path(args.manifest).name
    return ManifestDataset(args.manifest, schema=schema)


def _report(args: argparse.Namespace, trained: TrainedModel, pred: Any, metrics: Any) -> None:
    """The per-class table, and with ``-o`` the report's files (``--html``: one page)."""
    from polymodal.report import (
        classification_report,
        format_classes,
        regression_report,
        write_report,
    )

    task = trained.schema.target.task
    if pred.targets is None or task not in ("classification", "regression"):
        if args.output is not None:
            raise CLIError(f"-o writes reports of classifiers and regressors; this run is {task}.")
        return
    if task == "classification":
        report: Any = classification_report(
            pred.outputs, pred.targets.long(), trained.schema.target.class_names
        )
        print(format_classes(report))
    else:
        report = regression_report(pred.outputs[:, 0], pred.targets)
    if args.output is None:
        if args.html:
            raise CLIError("--html writes DIR/report.html: give the folder with -o DIR.")
        return
    title = f"{Path(str(trained.path)).parent.parent.name} ({args.split})"
    try:
        written = write_report(report, args.output, title, dict(metrics), html_page=args.html)
    except ImportError as e:
        raise CLIError(str(e)) from e
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(f"wrote {', '.join(str(p) for p in written)}")


def _drop_transform(trained: TrainedModel, drop: Sequence[str]) -> Callable[[Batch], Batch] | None:
    """A batch transform that removes the modalities ``drop`` (``None`` when empty)."""
    if not drop:
        return None
    from polymodal.robustness import drop_modalities

    used = [m for m in trained.schema.names if m in trained.config["model"]["encoders"]]
    unknown = [m for m in drop if m not in used]
    if unknown:
        raise CLIError(
            f"--drop must name modalities the model uses ({', '.join(used)}); got "
            f"{', '.join(unknown)}."
        )
    names = list(drop)
    return lambda batch: drop_modalities(batch, names)


def _print_probe(
    trained: Any,
    dataset: Any,
    metrics: Mapping[str, float],
    batch_size: int,
    device: torch.device,
) -> None:
    """``--probe``: fused accuracy and each modality's linear-probe accuracy, side by side."""
    from polymodal.training.probe import probe_modalities

    if trained.task != "supervised" or "accuracy" not in metrics:
        raise CLIError("--probe needs a supervised classification run (it reports accuracy).")
    train, val = (run_split(trained, s) for s in ("train", "val"))
    try:
        probe = probe_modalities(trained, train, val, dataset, batch_size=batch_size, device=device)
    except ValueError as e:
        raise CLIError(str(e)) from e
    columns = {"fused": {"accuracy": metrics["accuracy"]}}
    columns.update({f"probe:{m}": {"accuracy": acc} for m, acc in probe.items()})
    print(format_table(columns))
