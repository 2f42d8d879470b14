"""``polymodal datasets {list,info,check,download,export}``: built-in data sets and manifests.

* ``list``: one line per built-in data set (name, modalities, splits, licence).
* ``info NAME [--root PATH]``: modalities (kind, shape, rate), licence, upstream, and the
  examples per split and per class (windows, for ``har_phone_watch``).
* ``check MANIFEST [--schema FILE | --for-model RUN]``: say how a CSV/JSONL manifest is
  read (each modality's kind and the task, inferred or stated), decode every row and print
  each problem (row, column, file, what is wrong) and a summary; exit 1 if any.  The reader,
  the schema and the errors are those of ``train`` (and, with ``--for-model``, of
  ``predict``: the model's modalities, labels not read).
* ``download NAME [--root DIR] [--base-url URL]``: fetch a built-in data set
  (:func:`polymodal.data.download.download_dataset`: from a mirror, ``--base-url`` or
  ``$POLYMODAL_MIRROR``, else upstream), check it and say where it is.
* ``export NAME -o DIR [--split S ...] [--limit N]``: write a built-in data set as a user's
  own data looks (:func:`polymodal.data.manifest.export.export_manifest`): ``manifest.csv``,
  ``schema.yaml`` and one file per example and file modality, to train on with
  ``polymodal train DIR/manifest.csv --label label`` or to copy the layout of.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the data package imports torch: loaded by the verbs, not the parser
    from polymodal.data.dataset import MultimodalDataset
    from polymodal.data.modality import ModalitySpec, Schema

EXIT_OK = 0
EXIT_PROBLEMS = 1


def add_parser(subparsers: Any) -> None:
    """Add ``datasets`` and its verbs to the top-level ``subparsers``."""
    parser = subparsers.add_parser(
        "datasets",
        help="list built-in data sets, show one, or check a manifest",
        description="Built-in data sets and user manifests.",
    )
    parser.set_defaults(func=_usage(parser))
    verbs = parser.add_subparsers(dest="datasets_command", metavar="VERB")

    p_list = verbs.add_parser("list", help="one line per built-in data set")
    p_list.set_defaults(func=cmd_list)

    p_info = verbs.add_parser(
        "info", help="modalities, licence, upstream and counts per split and class"
    )
    p_info.add_argument("name", metavar="NAME", help="a built-in data set (see `datasets list`)")
    p_info.add_argument(
        "--root",
        metavar="PATH",
        default=None,
        help="folder holding the data set (default: $POLYMODAL_DATA, then the user cache)",
    )
    p_info.set_defaults(func=cmd_info)

    p_check = verbs.add_parser("check", help="decode every row of a manifest and list all problems")
    p_check.add_argument("manifest", metavar="MANIFEST", help="a .csv/.tsv/.jsonl manifest")
    which = p_check.add_mutually_exclusive_group()
    which.add_argument(
        "--schema",
        metavar="FILE",
        default=None,
        help="a YAML/JSON schema, as data.schema in a run config (default: inferred)",
    )
    which.add_argument(
        "--for-model",
        metavar="RUN",
        default=None,
        help="check the manifest as `polymodal predict RUN` reads it: the trained model's "
        "modalities and shapes; labels are not needed (nor read)",
    )
    p_check.add_argument("--label-column", default="label", metavar="COL")
    p_check.add_argument("--split-column", default="split", metavar="COL")
    p_check.add_argument("--id-column", default="id", metavar="COL")
    p_check.add_argument("--group-column", default="group", metavar="COL")
    p_check.add_argument(
        "--tabular",
        default="group",
        choices=("group", "separate"),
        help="numeric columns as one 'tabular' vector, or one modality each (as "
        "data.options.tabular)",
    )
    p_check.add_argument(
        "--base-dir",
        default=None,
        metavar="PATH",
        help="folder relative file paths start from (default: the manifest's folder)",
    )
    p_check.set_defaults(func=cmd_check)

    p_down = verbs.add_parser(
        "download",
        help="fetch a built-in data set and verify its checksums",
        description="Fetch a built-in data set (or one source folder of it) into DIR/<folder>/, "
        "checking every file's sha256; files already there and intact are kept, so running it "
        "again resumes a download.",
    )
    p_down.add_argument(
        "name", metavar="NAME", help="a built-in data set (see `datasets list`) or source folder"
    )
    p_down.add_argument(
        "--root",
        metavar="DIR",
        default=None,
        help="where to put it: DIR/<folder>/ (default: the user cache, ~/.cache/polymodal, "
        "where data sets are looked for after --root and $POLYMODAL_DATA)",
    )
    p_down.add_argument(
        "--base-url",
        metavar="URL",
        default=None,
        help="a mirror laid out like the data root (URL/<folder>/<file>); default "
        "$POLYMODAL_MIRROR, else the upstream sources",
    )
    p_down.set_defaults(func=cmd_download)

    p_export = verbs.add_parser(
        "export",
        help="write a built-in data set as a manifest with its files (your own data's layout)",
        description="Write a built-in data set as a CSV manifest (one row per example: id, one "
        "column per modality, label, split, group), a schema.yaml, and one file per example "
        "and file modality (WAV, PNG, CSV series, .npy features), read back exactly by "
        "`polymodal train DIR/manifest.csv --label label`.",
    )
    p_export.add_argument("name", metavar="NAME", help="a built-in data set (see `datasets list`)")
    p_export.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder to write (created)"
    )
    p_export.add_argument(
        "--split",
        dest="splits",
        action="append",
        metavar="SPLIT",
        default=None,
        help="a split to write (repeatable; default: every split but 'all')",
    )
    p_export.add_argument(
        "--limit", type=int, default=None, metavar="N", help="at most N examples per split"
    )
    p_export.add_argument(
        "--root",
        metavar="PATH",
        default=None,
        help="folder holding the data set (default: $POLYMODAL_DATA, then the user cache)",
    )
    p_export.add_argument(
        "--overwrite", action="store_true", help="replace DIR's manifest.csv and schema.yaml"
    )
    p_export.set_defaults(func=cmd_export)


class _usage:
    """``polymodal datasets`` with no verb: print its help, exit 2."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def __call__(self, args: argparse.Namespace) -> int:
        self.parser.print_help()
        return 2


# --------------------------------------------------------------------------- helpers


def _spec_line(spec: ModalitySpec) -> str:
    """``phone  timeseries  (L, 6) @ 50 Hz  description``."""
    if spec.shape is None:
        shape = "-"
    else:
        dims = (["T"] if spec.is_sequence else []) + [str(d) for d in spec.shape]
        shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    rate = ""
    if spec.sample_rate is not None:
        unit = "fps" if spec.kind.value == "video" else "Hz"
        rate = f"{spec.sample_rate:g} {unit}"
    return (
        f"{spec.name:<12} {spec.kind.value:<11} {shape:<16} {rate:<9} {spec.description}".rstrip()
    )


def _infos() -> dict[str, Any]:
    from polymodal.data.datasets import DATASETS
    from polymodal.data.datasets._common import INFOS

    return {name: INFOS.get(name) for name in DATASETS.names()}


def _get_info(name: str) -> Any:
    from polymodal.data.datasets import DATASETS
    from polymodal.data.datasets._common import INFOS

    DATASETS.get(name)  # unknown name: ValueError with the valid names and a suggestion
    info = INFOS.get(name)
    if info is None:  # registered without a DatasetInfo
        raise ValueError(f"Data set {name!r} has no DatasetInfo; register it with one.")
    return info


def _load(name: str, split: str, root: str | None) -> MultimodalDataset:
    from polymodal.data.datasets import load_dataset

    return load_dataset(name, split=split, root=root)


def _schema_of(name: str, splits: Sequence[str], root: str | None) -> Schema | None:
    """The data set's schema from its smallest split, or ``None`` if its files are absent."""
    from polymodal.data.paths import DatasetNotFoundError

    order = sorted(splits, key=lambda s: (s != "test", s == "all"))
    try:
        return _load(name, order[0], root).schema
    except DatasetNotFoundError:
        return None


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for j, r in enumerate([header, *rows]):
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


# --------------------------------------------------------------------------- verbs


def cmd_list(args: argparse.Namespace) -> int:
    """One line per built-in data set: name, modalities, splits, licence."""
    infos = _infos()
    rows: list[tuple[str, str, str, str]] = []
    for name, info in infos.items():
        splits = tuple(info.splits) if info is not None else ()
        schema = _schema_of(name, splits, None) if splits else None
        if schema is not None:
            mods = ", ".join(f"{m.name}:{m.kind.value}" for m in schema.modalities)
        else:
            mods = "(files not found; see `polymodal datasets info " + name + "`)"
        licence = info.licence if info is not None else "?"
        rows.append((name, mods, "/".join(splits), licence))
    if not rows:
        print("No data sets are registered.")
        return EXIT_OK
    w_name = max(len(r[0]) for r in rows)
    w_mods = max(len(r[1]) for r in rows)
    w_split = max(len(r[2]) for r in rows)
    print(f"{'name':<{w_name}}  {'modalities':<{w_mods}}  {'splits':<{w_split}}  licence")
    for name, mods, splits_s, licence in rows:
        print(f"{name:<{w_name}}  {mods:<{w_mods}}  {splits_s:<{w_split}}  {licence}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """Modalities, licence, upstream, and examples per split and per class (a built-in data
    set), or the same read from a manifest file."""
    if Path(args.name).suffix.lower() in (".csv", ".tsv", ".jsonl") or Path(args.name).is_file():
        return _manifest_info(args.name)
    info = _get_info(args.name)
    root = args.root
    # Counts for each real split; "all" is their union, shown as the total.
    splits = [s for s in info.splits if s != "all"] or list(info.splits)
    datasets = {s: _load(info.name, s, root) for s in splits}
    print(f"{info.name}: {info.description}")
    print(f"licence:  {info.licence}")
    print(f"upstream: {info.upstream}")
    print(f"splits:   {', '.join(info.splits)}")
    unit = "windows" if info.name == "har_phone_watch" else "examples"
    _print_contents(datasets, unit)
    return EXIT_OK


def _manifest_info(path: str) -> int:
    """``datasets info FILE``: a manifest's modalities, target, and rows per split and class."""
    from polymodal.data.manifest import ManifestDataset, read_manifest

    table = read_manifest(path)
    names = sorted({str(r["split"]) for r in table.rows if r.get("split") is not None})
    splits = names or ["all"]
    datasets: dict[str, MultimodalDataset] = {
        s: ManifestDataset(path, split=None if s == "all" else s) for s in splits
    }
    print(f"{path}: a manifest of {len(table.rows)} rows")
    print(f"splits:   {', '.join(splits)}" + ("" if names else " (no split column)"))
    _print_contents(datasets, "rows")
    return EXIT_OK


def _print_contents(datasets: dict[str, MultimodalDataset], unit: str) -> None:
    """Modalities and target of the data sets' schema, then counts per split and class."""
    splits = list(datasets)
    schema = next(iter(datasets.values())).schema
    print("modalities:")
    for spec in schema.modalities:
        print("  " + _spec_line(spec))
    t = schema.target
    labelled = any(x is not None for d in datasets.values() for x in d.targets())
    if not labelled:
        print("target:   none (unlabelled)")
    elif t.task == "classification" and t.num_classes:
        names = ", ".join(t.class_names) if t.class_names else f"0..{t.num_classes - 1}"
        print(f"target:   {t.name or 'label'}: classification, {t.num_classes} classes ({names})")
    else:
        print(f"target:   {t.name or 'label'}: {t.task}")
    counts = {s: d.class_counts() for s, d in datasets.items()} if _has_classes(datasets) else {}
    print(f"{unit} per split" + (" and class:" if counts else ":"))
    header = ["", *splits] + (["total"] if len(splits) > 1 else [])
    rows: list[list[str]] = []
    if counts:
        order = list(t.class_names) if t.class_names else []
        for c in sorted({c for cc in counts.values() for c in cc}, key=_class_order(order)):
            vals = [counts[s].get(c, 0) for s in splits]
            rows.append([c, *map(str, vals)] + ([str(sum(vals))] if len(splits) > 1 else []))
    totals = [len(d) for d in datasets.values()]
    rows.append(["total", *map(str, totals)] + ([str(sum(totals))] if len(splits) > 1 else []))
    groups = {s: len(set(d.groups())) for s, d in datasets.items()}
    rows.append(["groups", *(str(groups[s]) for s in splits)] + ([""] if len(splits) > 1 else []))
    for line in _table(header, rows):
        print(line)


def _has_classes(datasets: dict[str, MultimodalDataset]) -> bool:
    for d in datasets.values():
        t = d.schema.target
        if t.task != "classification" or not t.num_classes:
            return False
        if any(x is None for x in d.targets()):
            return False
    return True


def _class_order(order: list[str]) -> Any:
    def key(c: str) -> tuple[int, str]:
        return (order.index(c), "") if c in order else (len(order), c)

    return key


def cmd_check(args: argparse.Namespace) -> int:
    """Say how the manifest is read, print every problem and a summary; exit 1 if any."""
    from polymodal.cli import setup_logging
    from polymodal.data.manifest import check_manifest_report

    setup_logging()  # progress lines when stderr is not a terminal
    schema: Any = args.schema
    labels = True
    if args.for_model is not None:
        from polymodal.cli.train import predict_schema
        from polymodal.inference import load_trained

        schema = predict_schema(load_trained(args.for_model))
        labels = False
    report = check_manifest_report(
        args.manifest,
        schema=schema,
        label_column=args.label_column,
        split_column=args.split_column,
        id_column=args.id_column,
        group_column=args.group_column,
        base_dir=args.base_dir,
        tabular=args.tabular,
        labels=labels,
        progress=None,
    )
    name = os.fspath(args.manifest)
    print(f"{name}: {report.rows} rows, read as:")
    for line in report.description:
        if not labels and line.startswith("target:"):
            line = f"target: not read (predict ignores labels; the model predicts {_task(schema)})"
        print(f"  {line}")
    for p in report.problems:
        print(str(p))
    if report.problems:
        bad_rows = {p.row for p in report.problems if p.row is not None}
        whole = sum(p.row is None for p in report.problems)
        extra = f", {whole} about the whole manifest" if whole else ""
        print(
            f"{name}: {len(report.problems)} problem(s) in {len(bad_rows)} of {report.rows} "
            f"rows{extra}. Fix the files or cells above; an empty cell marks a modality missing."
        )
        return EXIT_PROBLEMS
    print(f"{name}: OK, {report.rows} rows, no problems.")
    return EXIT_OK


def _task(schema: Schema) -> str:
    t = schema.target
    if t.task == "regression":
        return "a value (regression)"
    names = ", ".join(t.class_names) if t.class_names else f"0..{t.num_classes - 1}"
    return f"{t.task}: {names}"


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch data set ``args.name``, verify it, and say where it is."""
    from polymodal.cli.main import CLIError
    from polymodal.data.download import MIRROR_ENV_VAR, DownloadError, download_dataset, verify
    from polymodal.data.upstream import DATASET_SOURCES, SOURCES

    if args.name not in DATASET_SOURCES and args.name not in SOURCES:
        from polymodal.errors import unknown_name_error

        raise unknown_name_error("data set", args.name, [*DATASET_SOURCES, *SOURCES])
    mirror = args.base_url or os.environ.get(MIRROR_ENV_VAR) or None
    if mirror is not None and not mirror.startswith(("http://", "https://", "file://")):
        raise CLIError(
            f"--base-url (or ${MIRROR_ENV_VAR}) must be an http://, https:// or file:// URL; "
            f"got {mirror!r}."
        )
    print(f"downloading {args.name} from {mirror or 'its upstream sources'} ...", flush=True)
    try:
        folder = download_dataset(args.name, args.root, mirror)
        sources = DATASET_SOURCES.get(args.name, (args.name,))
        where = folder.parent if len(sources) > 1 else folder
        checked = verify(args.name, where) if mirror is not None else None
    except DownloadError as e:  # network failure, HTTP error, a checksum that does not match
        raise CLIError(
            _cli_words(str(e)) + " (a mirror laid out like the data root: --base-url URL or "
            f"{MIRROR_ENV_VAR}=URL)"
        ) from e
    folders = ", ".join(str(where / s) if len(sources) > 1 else str(where) for s in sources)
    print(f"{args.name}: in {folders}")
    if checked is not None:
        print(f"verified: {checked} files, each with the sha256 of the reference copy")
    else:
        print(
            "verified: every file upstream serves unchanged, by sha256 (re-encoded ones are "
            "decoded instead; a warning above counts them); for a byte-for-byte check, "
            "download from a mirror with --base-url"
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Write data set ``args.name`` as ``args.output/manifest.csv`` with its files."""
    import inspect

    from polymodal.cli.main import CLIError
    from polymodal.data.datasets import DATASETS
    from polymodal.data.manifest.export import export_manifest

    info = _get_info(args.name)
    splits = args.splits or [s for s in info.splits if s != "all"] or list(info.splits)
    for s in splits:
        if s not in info.splits:
            raise CLIError(
                f"--split {s!r}: data set {info.name!r} has splits {', '.join(info.splits)}."
            )
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be a positive number of examples; got {args.limit}.")
    # Pixels as stored ([0, 1]): reading the manifest back normalises them as the data set did.
    raw = {"normalize": False}
    params = inspect.signature(DATASETS.get(info.name).builder).parameters
    options = {k: v for k, v in raw.items() if k in params}
    datasets = {s: _load_with(info.name, s, args.root, options) for s in splits}
    try:
        summary = export_manifest(datasets, args.output, limit=args.limit, overwrite=args.overwrite)
    except ValueError as e:
        raise CLIError(str(e).replace("overwrite=True (--overwrite)", "--overwrite")) from e
    counts = ", ".join(f"{n} {s}" for s, n in summary.rows.items())
    print(f"wrote {summary.manifest} ({counts} rows; {summary.files} files) and {summary.schema}")
    print(f"train on it:  polymodal train {summary.manifest} --label label")
    return EXIT_OK


def _load_with(name: str, split: str, root: str | None, options: dict[str, Any]) -> Any:
    from polymodal.data.datasets import load_dataset

    return load_dataset(name, split=split, root=root, **options)


def _cli_words(message: str) -> str:
    """A library message with its Python argument named as the CLI flag."""
    return (
        message.replace("pass base_url=/set", "pass --base-url/set")
        .replace("point base_url/", "point --base-url/")
        .replace("<base_url>", "<URL>")
    )
