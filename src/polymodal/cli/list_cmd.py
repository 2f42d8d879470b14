"""``polymodal list {encoders,fusions}``: registered components, one line each."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from polymodal.registry import Registry

# What ``list`` can show: the package whose import registers every entry, and the
# module and attribute holding the registry.
LISTABLE: dict[str, tuple[str, str, str]] = {
    "encoders": ("polymodal.encoders", "polymodal.encoders.base", "ENCODERS"),
    "fusions": ("polymodal.fusion", "polymodal.fusion.base", "FUSIONS"),
}


def registry_for(what: str) -> Registry[Any]:
    """The registry behind ``polymodal list WHAT`` (importing its module registers entries)."""
    package, module, attr = LISTABLE[what]
    importlib.import_module(package)
    registry: Registry[Any] = getattr(importlib.import_module(module), attr)
    return registry


def format_entries(registry: Registry[Any]) -> list[str]:
    """``name  description`` lines, sorted by name, names padded to one column."""
    entries = list(registry)
    width = max((len(e.name) for e in entries), default=0)
    return [f"{e.name:<{width}}  {(e.description.splitlines() or [''])[0]}" for e in entries]


def run(args: argparse.Namespace) -> int:
    registry = registry_for(args.what)
    lines = format_entries(registry)
    if not lines:
        print(f"No {args.what} are registered.")
        return 0
    print("\n".join(lines))
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list registered encoders or fusions",
        description="List registered components with a one-line description each.",
    )
    parser.add_argument("what", choices=sorted(LISTABLE), help="which registry to list")
    parser.set_defaults(func=run)
