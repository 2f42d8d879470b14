"""``polymodal list {encoders,fusions,tasks}``: registered components, one line each.

Each line shows the name, what the component accepts (the modality kinds an encoder reads;
``feature`` or ``decision`` level for a fusion) and its description.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from polymodal.registry import Registry

# What ``list`` can show: the package whose import registers every entry, and the
# module and attribute holding the registry.
LISTABLE: dict[str, tuple[str, str, str]] = {
    "encoders": ("polymodal.encoders", "polymodal.encoders.base", "ENCODERS"),
    "fusions": ("polymodal.models.build", "polymodal.fusion.base", "FUSIONS"),
    "tasks": ("polymodal.training.tasks", "polymodal.training.tasks", "TASKS"),
}


def registry_for(what: str) -> Registry[Any]:
    """The registry behind ``polymodal list WHAT`` (importing its module registers entries)."""
    package, module, attr = LISTABLE[what]
    importlib.import_module(package)
    if what == "fusions":  # the decision-level fusions register with the models
        importlib.import_module("polymodal.models.build").register_components()
    if what == "tasks":
        tasks = importlib.import_module("polymodal.training.tasks")
        for name in tasks.task_names():
            tasks.task_config(name)  # imports the module that registers it
    registry: Registry[Any] = getattr(importlib.import_module(module), attr)
    return registry


def format_entries(registry: Registry[Any]) -> list[str]:
    """``name  kinds  description`` lines, sorted by name, in aligned columns."""
    entries = list(registry)
    width = max((len(e.name) for e in entries), default=0)
    kinds = [",".join(e.kinds) or "-" for e in entries]
    kwidth = max((len(k) for k in kinds), default=0)
    return [
        f"{e.name:<{width}}  {k:<{kwidth}}  {(e.description.splitlines() or [''])[0]}"
        for e, k in zip(entries, kinds, strict=True)
    ]


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
        help="list registered encoders, fusions or training tasks",
        description="List registered components with a one-line description each.",
    )
    parser.add_argument("what", choices=sorted(LISTABLE), help="which registry to list")
    parser.set_defaults(func=run)
