"""``polymodal shards write SOURCE -o DIR``: a data set's splits as WebDataset tar shards.

``SOURCE`` is a CSV/JSONL manifest or a built-in data set name.  Every example of each
split is decoded once and stored as its decoded arrays: ``DIR/<split>-000000.tar``, ...
plus ``DIR/<split>.json`` (schema, count, ids, groups, targets, each shard's sha256).
Train on them with ``data: {shards: DIR}`` in a run config (the same examples, order and
batches as the source); stream them with ``polymodal.data.webshards.ShardStream``.
Rewriting an identical set changes nothing; replacing a different one needs
``--overwrite``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the data modules import torch: loaded by the verb, not the parser
    from polymodal.data.dataset import MultimodalDataset


def add_parser(subparsers: Any) -> None:
    """Add ``shards`` and its verb ``write`` to the top-level ``subparsers``."""
    parser = subparsers.add_parser(
        "shards", help="write a data set as WebDataset tar shards", description=__doc__
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    verbs = parser.add_subparsers(dest="shards_command", metavar="VERB")
    p = verbs.add_parser(
        "write",
        help="decode a manifest's or data set's splits into tar shards",
        description=__doc__,
    )
    p.add_argument("source", metavar="SOURCE", help="a CSV/JSONL manifest or a data set name")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the shard folder")
    p.add_argument(
        "--split",
        action="append",
        default=None,
        metavar="NAME",
        help="a split to write (repeatable; default: every split, or 'all' for a manifest "
        "without a split column)",
    )
    p.add_argument(
        "--shard-size", type=int, default=1000, metavar="N", help="examples per shard (1000)"
    )
    p.add_argument("--root", default=None, help="a built-in data set's folder")
    p.add_argument("--schema", default=None, help="a manifest's schema file (YAML/JSON)")
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="only the first N examples per split"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a different shard set of a split"
    )
    p.set_defaults(func=run_write)


def _splits(args: argparse.Namespace) -> list[str | None]:
    """The splits to write: ``--split``, else every split of the source (``None``: all
    rows of a manifest without a split column)."""
    from polymodal.data.sources import is_manifest

    if args.split:
        return list(args.split)
    if is_manifest(args.source):
        from polymodal.data.manifest import ManifestDataset

        found = ManifestDataset(args.source, schema=args.schema).splits
        return list(found) if found else [None]
    from polymodal.data.datasets._common import INFOS

    info = INFOS.get(args.source)
    if info is None:
        from polymodal.errors import unknown_name_error

        raise unknown_name_error("data set", args.source, sorted(INFOS))
    return list(info.splits)


def run_write(args: argparse.Namespace) -> int:
    from polymodal.cli import setup_logging
    from polymodal.data.sources import is_manifest, load_source
    from polymodal.data.webshards import write_shards

    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}.")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}.")
    if args.schema is not None and not is_manifest(args.source):
        raise ValueError("--schema applies to a manifest; a built-in data set has its own.")
    setup_logging()
    for split in _splits(args):
        ds: MultimodalDataset
        if is_manifest(args.source):
            from polymodal.data.manifest import ManifestDataset

            ds = ManifestDataset(args.source, schema=args.schema, split=split)
        else:
            ds = load_source(args.source, split=split, root=args.root)
        if args.limit is not None and args.limit < len(ds):
            ds = ds.subset(range(args.limit))
        index = write_shards(
            ds,
            args.output,
            split=split or "all",
            shard_size=args.shard_size,
            overwrite=args.overwrite,
        )
        size = sum(s["bytes"] for s in index["shards"]) / 1e6
        print(
            f"{index['split']}: {index['count']} examples in {len(index['shards'])} shard(s), "
            f"{size:.1f} MB -> {args.output}/{index['split']}.json"
        )
    return 0
