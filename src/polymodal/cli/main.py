"""``polymodal`` entry point.  Each verb lives in its own module with ``add_parser``.

Building the parser imports no torch: the verb modules import the library inside their
command functions, so ``--help`` and argument errors answer at once
(tests/cli/test_fast_cli.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from polymodal import __version__
from polymodal.cli import plain_help

# Verb modules, each exposing ``add_parser(subparsers) -> None``; the parser's
# ``func(args) -> int`` runs the verb.
VERB_MODULES = (
    "polymodal.cli.datasets",
    "polymodal.cli.list_cmd",
    "polymodal.cli.train",
    "polymodal.cli.explain",
    "polymodal.cli.demo",
    "polymodal.cli.embed",
    "polymodal.cli.index_cmd",
    "polymodal.cli.search",
    "polymodal.cli.featurize",
    "polymodal.cli.shards_cmd",
    "polymodal.cli.sentiment",
    "polymodal.cli.robustness",
    "polymodal.cli.serve",
    "polymodal.cli.caption",
)


class CLIError(Exception):
    """A user-facing error: printed as one message, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polymodal", description="Multimodal machine learning on PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"polymodal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in VERB_MODULES:
        importlib.import_module(mod_name).add_parser(sub)
    plain_help(parser)  # the help is written as reST (docstrings); show it as plain text
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, TypeError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"polymodal {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
