"""``polymodal index build EMBEDDINGS -o INDEX``: an index over one modality's embeddings.

Reads a folder written by ``polymodal embed`` and indexes one modality's vectors
(``--modality``; default ``image`` when embedded, else the only one), exactly
(:class:`~polymodal.retrieval.ExactIndex`, the default) or with FAISS (``--faiss flat``,
``ivf`` or ``hnsw``).  The index records the model's fingerprint and modalities, so
``polymodal search`` refuses queries from another model or a modality the model lacks;
``INDEX/source.json`` names the checkpoint that embedded it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the index modules import torch: loaded by the verb, not the parser
    from polymodal.retrieval.index import Index

SOURCE_FILE = "source.json"
#: ``--faiss`` choices: ``polymodal.retrieval.faiss_index.FAISS_KINDS``, restated so the
#: parser needs no torch (tests/cli/test_fast_cli.py keeps them equal)
FAISS_CHOICES = ("flat", "ivf", "hnsw", "ivfpq")


def add_parser(subparsers: Any) -> None:
    """Add ``index`` and its verb ``build`` to the top-level ``subparsers``."""
    parser = subparsers.add_parser(
        "index", help="build a search index from embeddings", description=__doc__
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    verbs = parser.add_subparsers(dest="index_command", metavar="VERB")
    p = verbs.add_parser("build", help="index one modality of a `polymodal embed` folder")
    p.add_argument("embeddings", metavar="EMBEDDINGS", help="a folder from `polymodal embed`")
    p.add_argument("-o", "--output", required=True, metavar="INDEX", help="index folder")
    p.add_argument("--modality", default=None, help="which embedded modality to index")
    p.add_argument(
        "--faiss", choices=FAISS_CHOICES, default=None, help="a FAISS index (default: exact)"
    )
    p.add_argument("--nlist", type=int, default=None, help="IVF cells (default ~sqrt(N))")
    p.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from polymodal.checkpoint import atomic_write_text
    from polymodal.joint.embed import VECTORS_FILE, read_embedded, read_embeddings
    from polymodal.retrieval.index import ExactIndex, FaissIndex

    manifest = read_embeddings(args.embeddings)
    counts: dict[str, int] = manifest["counts"]
    modality = args.modality
    if modality is None:
        modality = (
            "image" if "image" in counts else (next(iter(counts)) if len(counts) == 1 else None)
        )
        if modality is None:
            raise ValueError(f"{args.embeddings} holds {sorted(counts)}; pick one with --modality.")
    if modality not in counts:
        raise ValueError(
            f"--modality {modality!r} was not embedded in {args.embeddings}; it holds "
            f"{sorted(counts)}."
        )
    embedded = read_embedded(args.embeddings, modality, manifest)
    vectors, ids, metadata = embedded.vectors, embedded.ids, embedded.metadata
    common: dict[str, Any] = {
        "modalities": manifest["model_modalities"],
        "model": manifest["model"],
    }
    index: Index
    if args.faiss is None:
        index = ExactIndex(int(manifest["dim"]), **common)
    else:
        nlist = args.nlist or max(1, math.isqrt(len(ids)))
        index = FaissIndex(int(manifest["dim"]), kind=args.faiss, nlist=nlist, **common)
    try:
        index.add(vectors, ids, metadata, modality=modality)
    except ValueError as exc:  # e.g. an all-zero row of a cosine index
        raise ValueError(f"{Path(args.embeddings) / modality / VECTORS_FILE}: {exc}") from None
    out = index.save(args.output)
    source = {
        "checkpoint": manifest["checkpoint"],
        "embeddings": str(Path(args.embeddings).resolve()),
        "model": manifest["model"],
    }
    atomic_write_text(out / SOURCE_FILE, json.dumps(source, indent=1) + "\n")
    kind = "exact" if args.faiss is None else f"faiss {args.faiss}"
    print(f"indexed {len(index)} {modality} vectors ({kind}, {index.dim}-d) -> {out}")
    return 0
