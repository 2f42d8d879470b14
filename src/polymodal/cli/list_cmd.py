"""``polymodal list {encoders,fusions,tasks}``: registered components, one line each.

Each line shows the name, what the component accepts (the modality kinds an encoder reads;
``feature`` or ``decision`` level for a fusion) and its description.

The lines come from ``polymodal.cli.catalogue``, a copy of the registries that loads without
torch, so ``list`` answers at once; tests/cli/test_fast_cli.py fails when the copy and the
registries differ, and ``python -m polymodal.cli.list_cmd`` writes it again.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polymodal.registry import Registry

#: One ``list`` line: name, kinds (comma-joined, ``-`` for none), first line of description.
Row = tuple[str, str, str]

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


def registry_rows(registry: Registry[Any]) -> list[Row]:
    """The ``list`` rows of ``registry``, in its order (sorted by name)."""
    return [
        (e.name, ",".join(e.kinds) or "-", (e.description.splitlines() or [""])[0])
        for e in registry
    ]


def format_rows(rows: Sequence[Row]) -> list[str]:
    """``name  kinds  description`` lines in aligned columns."""
    width = max((len(name) for name, _, _ in rows), default=0)
    kwidth = max((len(kinds) for _, kinds, _ in rows), default=0)
    return [f"{name:<{width}}  {kinds:<{kwidth}}  {desc}" for name, kinds, desc in rows]


def format_entries(registry: Registry[Any]) -> list[str]:
    """``name  kinds  description`` lines, sorted by name, in aligned columns."""
    return format_rows(registry_rows(registry))


CATALOGUE_FILE = Path(__file__).with_name("catalogue.py")


def catalogue_source() -> str:
    """The text of ``polymodal/cli/catalogue.py`` as the registries stand (imports them)."""
    body = "".join(
        f"    {what!r}: (\n"
        + "".join(f"        {row!r},\n" for row in registry_rows(registry_for(what)))
        + "    ),\n"
        for what in sorted(LISTABLE)
    )
    return (
        '"""What ``polymodal list`` prints, copied from the registries so that it loads without\n'
        "torch.  Written by ``python -m polymodal.cli.list_cmd``; do not edit.\n"
        '"""\n\n'
        "CATALOGUE: dict[str, tuple[tuple[str, str, str], ...]] = {\n"
        f"{body}}}\n"
    )


def run(args: argparse.Namespace) -> int:
    from polymodal.cli.catalogue import CATALOGUE

    lines = format_rows(CATALOGUE[args.what])
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


if __name__ == "__main__":  # pragma: no cover
    CATALOGUE_FILE.write_text(catalogue_source(), encoding="utf-8")
    print(f"wrote {CATALOGUE_FILE}")
