"""``polymodal featurize INPUT... -o OUT``: raw videos (or audio) -> per-utterance features.

``INPUT`` is media files, folders (searched for media) or a CSV/JSONL manifest with a
``video`` column (optional ``id``, ``transcript`` = a subtitle file, and any other columns,
e.g. ``label``, copied to every utterance row).  ``OUT`` receives ``manifest.jsonl``, which
``polymodal train`` reads as it is, the arrays it points to, ``utterances.jsonl`` (times and
words), ``errors.jsonl`` and ``report.json`` (see :mod:`polymodal.featurize.shards`).  A
killed run resumes where it stopped; a file that cannot be featurised gets its own error
line and the run goes on (exit status 1 when any file failed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from polymodal.cli import setup_logging


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "featurize",
        help="extract face, voice and word features from videos into trainable shards",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="media files, folders, a manifest")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--fps", type=float, default=5.0, help="face frames per second (default 5)")
    p.add_argument(
        "--detector", choices=("mediapipe", "haar"), default="mediapipe", help="face detector"
    )
    p.add_argument("--no-face", action="store_true", help="skip the face stage")
    p.add_argument("--no-embed", action="store_true", help="face geometry only, no crop embeddings")
    p.add_argument(
        "--asr",
        choices=("lm", "grammar", "none"),
        default="lm",
        help="words when no subtitle file is given: general LM, a JSGF grammar, or none",
    )
    p.add_argument("--grammar", default=None, metavar="FILE", help="JSGF grammar (--asr grammar)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from polymodal.featurize.pipeline import FeaturizeConfig
    from polymodal.featurize.shards import featurize_many, format_report

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}.")
    setup_logging()
    config = FeaturizeConfig(
        fps=args.fps,
        detector=args.detector,
        face=not args.no_face,
        embed_faces=not args.no_embed,
        asr=args.asr,
        grammar=args.grammar,
    )
    report = featurize_many(
        args.inputs, args.output, config, workers=args.workers, progress=sys.stderr.isatty()
    )
    print(format_report(report))
    return 1 if report["failed"] else 0
