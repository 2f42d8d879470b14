"""``polymodal train``, ``polymodal evaluate`` and ``polymodal predict``.

* ``train CONFIG.yaml [key=value ...] [--resume | --overwrite]``: run an experiment of any
  task (``supervised`` by default, ``context``, ``contrastive``; see
  :mod:`polymodal.training.config`) and print its validation and test metrics.  When
  ``output_dir`` (default ``runs/<name>``) already holds a run, the new one goes to
  ``runs/<name>-2`` (``-3``, ...) and ``runs/<name>.latest`` names the newest;
  ``--overwrite`` replaces the run instead, ``--resume`` continues it.  A
  ``task: contrastive`` run (``configs/flickr8k.yaml``) writes a checkpoint for
  ``polymodal embed``.  ``--time-limit 10m`` (``optim.time_limit``) stops at the first
  step after that long and finishes as usual.
* ``train DATA.csv --label COL [--group COL] [--task regression]``: a default model for a
  manifest's columns (:func:`polymodal.training.auto.manifest_config`), saved as
  ``runs/<name>.yaml``; ``--task`` overrides the task inferred from the label column.
* ``evaluate CHECKPOINT_DIR [CHECKPOINT_DIR ...] [--split test] [--drop MODALITY ...]
  [--probe]`` (:mod:`polymodal.cli.evaluate`): rebuild the model from the config saved with
  the checkpoint, load its weights and print the metrics of one split; several runs of one
  task and data are evaluated as one ensemble (class probabilities averaged); ``--drop``
  evaluates with those modalities absent from every example; ``--probe`` adds each
  modality's linear-probe accuracy next to the fused accuracy
  (:func:`polymodal.training.probe.probe_modalities`).
* ``predict CHECKPOINT_DIR MANIFEST -o predictions.csv``: predict every row of a CSV/JSONL
  manifest; writes ``id``, ``prediction`` and one probability column per class.

``CHECKPOINT_DIR`` is a checkpoint folder (``runs/NAME/checkpoints/best``), a run folder
(``runs/NAME``, meaning its best checkpoint) or a latest pointer (``runs/NAME.latest``).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polymodal.cli import setup_logging
from polymodal.cli.main import CLIError

if TYPE_CHECKING:  # torch and the library load in the commands, not with the parser
    import torch

    from polymodal.data.dataset import MultimodalDataset
    from polymodal.data.modality import Schema
    from polymodal.inference import TrainedModel


def add_parser(subparsers: Any) -> None:
    """Register ``train``, ``evaluate`` and ``predict`` on the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model from a YAML config; key=value arguments override its "
        "entries (e.g. optim.lr=3e-4 model.fusion.name=late data.options.modalities=[text,audio]).",
    )
    p.add_argument(
        "config",
        metavar="CONFIG",
        nargs="?",
        help="a YAML config (see configs/), or a CSV/JSONL manifest: then a default model "
        "for its columns is chosen, printed and saved as runs/<name>.yaml",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, values read as YAML"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir from its last checkpoint (same config)",
    )
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in output_dir (default: keep it and train into output_dir-2, "
        "-3, ...)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu, cuda, cuda:N or mps; overrides the config's device (default: the "
        "config's, auto when it names none)",
    )
    p.add_argument(
        "--label",
        default=None,
        metavar="COLUMN",
        help="with DATA.csv/.jsonl in place of CONFIG: the label column (default: label)",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="COLUMN",
        help="with DATA.csv/.jsonl: the column whose values never straddle train and "
        "validation (speaker, subject; default: the manifest's group column, else each row)",
    )
    p.add_argument(
        "--task",
        default=None,
        choices=TASKS,
        help="with DATA.csv/.jsonl: what to learn from the label column, instead of the task "
        "inferred from its values (e.g. regression for a numeric column of few integers)",
    )
    p.add_argument(
        "--time-limit",
        default=None,
        type=duration,
        metavar="DURATION",
        help="stop training at the first step after this long (90s, 10m, 1.5h or seconds), "
        "then finish as usual: best checkpoint, test metrics, results.json (sets "
        "optim.time_limit; --resume with a larger one continues)",
    )
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser(
        "evaluate",
        help="metrics of a trained checkpoint on one split",
        description="Rebuild a trained model from its checkpoint and print its metrics.",
    )
    e.add_argument(
        "checkpoint",
        metavar="CHECKPOINT_DIR",
        nargs="+",
        help="runs/NAME or a checkpoint folder; several runs of one task and data (e.g. seeds) "
        "are evaluated as one ensemble: their class probabilities averaged",
    )
    e.add_argument(
        "--split",
        default="test",
        help="test, val or train as the run split them, or a split name of the data set "
        "(default: test)",
    )
    e.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="MODALITY",
        help="evaluate with this modality absent from every example (repeatable)",
    )
    e.add_argument(
        "--probe",
        action="store_true",
        help="also fit a linear probe on each frozen encoder (run's train split, L2 chosen on "
        "its val split) and print its accuracy on --split next to the fused accuracy",
    )
    e.add_argument(
        "--manifest",
        default=None,
        metavar="FILE",
        help="evaluate on a labelled CSV/JSONL manifest instead of a split of the run's data "
        "(its columns as for predict, plus the label column)",
    )
    e.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="DIR",
        help="write a report there: report.json and, for a classifier, confusion.png and "
        "reliability.png (calibration), for a regressor regression.png (scatter, residuals)",
    )
    e.add_argument("--html", action="store_true", help="also write DIR/report.html (needs -o)")
    _add_runtime_args(e)
    from polymodal.cli.evaluate import cmd_evaluate  # it imports this module's helpers

    e.set_defaults(func=cmd_evaluate)

    r = subparsers.add_parser(
        "predict",
        help="predict the rows of a manifest with a trained checkpoint",
        description="Predict every row of a CSV/JSONL manifest whose columns are the model's "
        "modalities; writes id, prediction and class probabilities as CSV.",
    )
    r.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="runs/NAME or a checkpoint folder")
    r.add_argument("manifest", metavar="MANIFEST", help="a .csv/.tsv/.jsonl manifest")
    r.add_argument(
        "-o", "--output", default="predictions.csv", help="CSV to write (default: predictions.csv)"
    )
    _add_runtime_args(r)
    r.set_defaults(func=cmd_predict)


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's batch size")


#: What ``--task`` can make of a manifest's label column.
TASKS = ("classification", "regression", "multilabel")
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)([smh]?)")


def duration(text: str) -> float:
    """Seconds in ``--time-limit`` ``text``: ``90s``, ``10m``, ``1.5h`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    seconds = 0.0
    if match is not None:
        seconds = float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as 90s, 10m, 1.5h or plain seconds (600); got "
            f"{text!r}. Pass e.g. --time-limit 10m."
        )
    return seconds


def format_table(columns: Mapping[str, Mapping[str, float] | None]) -> str:
    """A metric-per-row table with one column per entry of ``columns`` (``None``: skipped)."""
    cols = {k: v for k, v in columns.items() if v is not None}
    names: list[str] = []
    for metrics in cols.values():
        names += [m for m in metrics if m not in names]
    width = max([len("metric"), *(len(n) for n in names)])
    lines = [f"{'metric':<{width}}" + "".join(f"  {c:>9}" for c in cols)]
    for n in names:
        cells = "".join(f"  {m[n]:>9.4f}" if n in m else f"  {'-':>9}" for m in cols.values())
        lines.append(f"{n:<{width}}{cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- train


def _manifest_run_config(args: argparse.Namespace) -> Any:
    """``train DATA.csv``: the default config for the manifest, printed and saved as YAML
    beside the run (``runs/<name>.yaml``) so that it can be edited and re-run."""
    from polymodal.config import apply_overrides
    from polymodal.training.auto import manifest_config
    from polymodal.training.config import TrainConfig

    cfg = manifest_config(args.config, args.label or "label", args.group, task=args.task)
    cfg = TrainConfig.from_dict(apply_overrides(cfg.to_dict(), args.overrides))
    saved = Path(cfg.run_dir).with_suffix(".yaml")
    saved.parent.mkdir(parents=True, exist_ok=True)
    text = cfg.to_yaml()
    saved.write_text(text, encoding="utf-8")
    print(
        f"# the run config chosen for {args.config} (saved as {saved}; edit and re-run "
        f"with polymodal train {saved}):\n{text}"
    )
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from polymodal.checkpoint import LATEST_SUFFIX
    from polymodal.training import load_config, train
    from polymodal.training.distributed import is_main

    if args.config is None:
        raise CLIError(
            "train needs a CONFIG file: polymodal train configs/har_phone_watch.yaml (the "
            "shipped configs are in configs/; KEY=VALUE arguments after it override entries)."
        )
    if Path(args.config).suffix.lower() in (".csv", ".tsv", ".jsonl"):
        cfg = _manifest_run_config(args)
    else:
        if args.label is not None or args.group is not None or args.task is not None:
            raise CLIError(
                "--label, --group and --task describe a manifest given as DATA.csv; in a "
                "config, set data.options.label_column / data.options.group_column / "
                "data.options.task instead."
            )
        cfg = load_config(args.config, args.overrides)
    if args.device is not None:
        from dataclasses import replace

        from polymodal.device import resolve_device

        resolve_device(args.device, "--device")  # an unusable device fails before any work
        cfg = replace(cfg, device=args.device)
    if args.time_limit is not None:
        cfg = cfg.replace(**{"optim.time_limit": args.time_limit})
    setup_logging()
    try:
        result = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except FloatingPointError as e:
        raise CLIError(str(e)) from e
    if not is_main():  # under torchrun rank 0 alone reports
        return 0
    info = result.info
    extra = f" (+{info['feature_seconds']:.1f} s features)" if "feature_seconds" in info else ""
    if result.run_dir != cfg.run_dir:
        print(
            f"{cfg.run_dir} holds another run (kept); this run is in {result.run_dir} "
            f"({cfg.run_dir}{LATEST_SUFFIX} names the newest; --overwrite replaces instead)"
        )
    print(
        f"run {result.run_dir}: best epoch {result.best_epoch} of {result.epochs_run} "
        f"(monitor val {cfg.selection_metric}), {result.seconds:.1f} s{extra}; checkpoint "
        f"{result.checkpoint}"
    )
    print(format_table({"val": result.best_val, "test": result.test}))
    temperatures = info.get("modality_temperatures")
    if temperatures:  # late fusion with calibrate: true
        shown = ", ".join(f"{m} {t:.3g}" for m, t in temperatures.items())
        print(f"late-fusion temperatures (fitted on validation): {shown}")
    return 0


# --------------------------------------------------------------------------- evaluate


def run_split(trained: TrainedModel, split: str) -> MultimodalDataset:
    """Split ``split`` of a trained run's data, as the run split it (see
    :func:`polymodal.training.data.dataset_for_split`)."""
    from polymodal.training.config import DataConfig
    from polymodal.training.data import dataset_for_split

    data = DataConfig.from_dict(trained.config["data"], "data")
    return dataset_for_split(data, int(trained.config.get("seed", 0)), split)


def _batch_size(args: argparse.Namespace, default: int) -> int:
    if args.batch_size is None:
        return default
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    return int(args.batch_size)


# --------------------------------------------------------------------------- predict


def model_columns(schema: Schema) -> list[str]:
    """The manifest columns a model reads: each modality's recorded ``columns`` (training
    records them), else the column of its name; an old ``tabular`` modality without them
    takes every numeric column, so it names none."""
    from polymodal.data.modality import ModalityKind

    out: list[str] = []
    for spec in schema.modalities:
        if spec.columns is not None:
            out += [c for c in spec.columns if c not in out]
        elif spec.kind is not ModalityKind.TABULAR:
            out.append(spec.name)
    return out


def check_manifest_columns(columns: Sequence[str], expected: Sequence[str], manifest: str) -> None:
    """Raise :class:`CLIError` unless every column in ``expected`` is in ``columns``."""
    missing = [m for m in expected if m not in columns]
    if missing:
        from polymodal.errors import did_you_mean

        spare = [c for c in columns if c not in expected]
        hints = " ".join(
            f"For {m!r}: {h.strip()}" for m in missing if (h := did_you_mean(m, spare))
        )
        raise CLIError(
            f"Manifest {manifest!r} does not match the model: it lacks column(s) {missing}. "
            f"The model was trained on columns {list(expected)} (plus optional "
            f"id/label/split/group); the manifest has: {list(columns)}."
            + (f" {hints}" if hints else "")
            + " Rename the columns or use a checkpoint trained on these modalities."
        )


def predict_schema(trained: TrainedModel) -> Schema:
    """The schema ``predict`` reads a manifest with: the modalities the model has an encoder
    for, and its target (for the class names; labels are not read)."""
    if trained.task != "supervised":
        raise CLIError(f"predict takes a supervised run; {trained.path} is a {trained.task!r} run.")
    encoders = trained.config["model"]["encoders"]
    return trained.schema.select([m for m in trained.schema.names if m in encoders])


def output_path(path: str, flag: str = "-o") -> Path:
    """``path`` as a file that can be written, checked before any work; else a CLIError."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise CLIError(
            f"{flag} {str(out)!r} is a folder; give a file name, e.g. "
            f"{flag} {str(out / 'predictions.csv')!r}."
        )
    folder = out.parent
    while not folder.exists() and folder != folder.parent:  # the folders made on writing
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(
            f"{flag} {str(out)!r}: {str(folder)!r} is a file, not a folder. Choose another path."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(
            f"{flag} {str(out)!r}: folder {str(folder)!r} is not writable (permission "
            "denied). Choose a path in a folder you can write to."
        )
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    from polymodal.checkpoint import atomic_write_text
    from polymodal.data.manifest import ManifestDataset, read_manifest
    from polymodal.device import resolve_device
    from polymodal.inference import load_trained, predict

    out = output_path(args.output)
    trained = load_trained(args.checkpoint)
    schema = predict_schema(trained)
    table = read_manifest(args.manifest)
    check_manifest_columns(table.columns, model_columns(schema), str(args.manifest))
    # labels=False: predict does not need labels, so one the model never saw is no error
    dataset = ManifestDataset(args.manifest, schema=schema, labels=False)
    device = resolve_device(args.device, "--device")
    pred = predict(
        trained.model.to(device),
        dataset,
        device,
        _batch_size(args, trained.batch_size),
        trained.precision,
    )
    text = predictions_csv(pred.ids, pred.outputs, schema.target.task, schema.target.class_names)
    try:
        atomic_write_text(out, text)
    except OSError as e:
        raise CLIError(
            f"Cannot write the predictions to -o {str(out)!r}: {e.strerror or e}. Choose "
            "another path with -o."
        ) from None
    print(f"wrote {len(pred.ids)} predictions to {out}")
    return 0


#: A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_safe(cell: str) -> str:
    """``cell``, prefixed with ``'`` if a spreadsheet would run it as a formula.

    As OWASP recommends for CSV injection: a cell starting with ``=``, ``+``, ``-``, ``@``,
    a tab or a carriage return gets a leading single quote, which spreadsheets show as
    text.  Plain numbers (``-1.5``) are left alone: they are no formula.
    """
    if cell.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def predictions_csv(
    ids: Sequence[str], outputs: torch.Tensor, task: str, class_names: Sequence[str] | None
) -> str:
    """CSV text: ``id,prediction`` and, for classification/multilabel, ``prob_<class>``.

    ``outputs`` are (N, K) logits.  Classification predicts the class name with the highest
    softmax probability; multilabel the ``;``-joined labels with sigmoid >= 0.5;
    regression the value.  Ids and class names that a spreadsheet would run as formulas
    are escaped (:func:`spreadsheet_safe`).
    """
    import torch

    safe = spreadsheet_safe
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if task == "regression":
        w.writerow(["id", "prediction"])
        for i, v in zip(ids, outputs[:, 0].tolist(), strict=True):
            w.writerow([safe(str(i)), f"{v:.6g}"])
        return buf.getvalue()
    k = outputs.shape[1]
    names = list(class_names) if class_names else [str(c) for c in range(k)]
    probs = torch.softmax(outputs, -1) if task == "classification" else torch.sigmoid(outputs)
    w.writerow(["id", "prediction", *(safe(f"prob_{n}") for n in names)])
    for i, p in zip(ids, probs.tolist(), strict=True):
        if task == "classification":
            label = names[max(range(k), key=lambda c: p[c])]
        else:
            label = ";".join(n for n, q in zip(names, p, strict=True) if q >= 0.5)
        w.writerow([safe(str(i)), safe(label), *(f"{q:.6f}" for q in p)])
    return buf.getvalue()


__all__ = [
    "add_parser",
    "check_manifest_columns",
    "format_table",
    "model_columns",
    "output_path",
    "predict_schema",
    "predictions_csv",
    "run_split",
    "spreadsheet_safe",
]
