"""``polymodal embed CHECKPOINT SOURCE -o DIR``: embed a data set with a joint model.

``SOURCE`` is a built-in data set name (``flickr8k``; ``--split`` picks the split) or a
CSV/JSONL manifest.  Every modality that both the model and the data have is embedded
(``--modalities`` narrows it) into ``DIR/<modality>/`` (``vectors.npy``, ``ids.json``,
``metadata.json``); an example that lists several captions (Flickr8k's five) gives one
text item per caption.  ``DIR/embeddings.json``, written last, records the checkpoint, the
model fingerprint, D and the counts; ``polymodal index build DIR`` reads it.  The format
is :mod:`polymodal.joint.embed`'s.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Add ``embed`` to the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "embed",
        help="embed a data set or manifest with a joint embedding checkpoint",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a joint embedding checkpoint folder")
    p.add_argument(
        "source", metavar="MANIFEST_OR_DATASET", help="a built-in data set name or a manifest"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--split",
        default=None,
        help="split of a built-in data set (default: test), or the "
        "manifest split column value to keep (default: all rows)",
    )
    p.add_argument(
        "--modalities", nargs="+", default=None, metavar="NAME", help="modalities to embed"
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N examples only")
    p.add_argument("--batch-size", type=int, default=32, metavar="B")
    p.add_argument("--root", default=None, metavar="PATH", help="data set folder")
    p.set_defaults(func=run)


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")


def run(args: argparse.Namespace) -> int:
    from polymodal.data.sources import load_source
    from polymodal.joint.checkpoint import load_joint_checkpoint
    from polymodal.joint.embed import embed_dataset, write_embeddings

    _check_positive("--limit", args.limit)
    _check_positive("--batch-size", args.batch_size)
    model, _ = load_joint_checkpoint(args.checkpoint)
    dataset = load_source(args.source, args.split, args.root)
    shared = [m for m in model.modalities if m in dataset.schema]
    if args.modalities is not None:
        for m in args.modalities:
            if m not in model.modalities:
                raise ValueError(
                    f"--modalities: the model has no modality {m!r}; it embeds {model.modalities}."
                )
            if m not in dataset.schema:
                raise ValueError(
                    f"--modalities: the data has no modality {m!r}; it has {dataset.schema.names}."
                )
        shared = list(args.modalities)
    if not shared:
        raise ValueError(
            f"The model embeds {model.modalities} but {args.source!r} has "
            f"{dataset.schema.names}: nothing in common to embed."
        )
    embedded = embed_dataset(model, dataset, shared, limit=args.limit, batch_size=args.batch_size)
    counts = write_embeddings(
        args.output,
        embedded,
        model,
        checkpoint=args.checkpoint,
        source=args.source,
        split=args.split,
    )
    for m, n in counts.items():
        print(f"{m}: {n} vectors -> {args.output}/{m}")
    return 0
