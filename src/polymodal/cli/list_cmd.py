"""``polymodal list {encoders,fusions,tasks} [NAME]``: registered components.

Each component shows its name, what it accepts (the modality kinds an encoder reads;
``feature`` or ``decision`` level for a fusion) and its description, then its parameters
with their defaults (``name=default``, the keys of ``params`` in a run config).  With
``NAME``, one component in full: each parameter's type and default.

The lines come from ``polymodal.cli.catalogue``, a copy of the registries that loads without
torch, so ``list`` answers at once; tests/cli/test_fast_cli.py fails when the copy and the
registries differ, and ``python -m polymodal.cli.list_cmd`` writes it again.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polymodal.registry import Registry

#: A parameter: name, type (as annotated) and default (as YAML writes it).
Param = tuple[str, str, str]
#: One component: name, kinds (comma-joined, ``-`` for none), first line of description,
#: and the parameters a config may set (those with a default; polymodal supplies the others,
#: such as an encoder's modality spec or a fusion's input sizes).
Row = tuple[str, str, str, tuple[Param, ...]]

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
        (
            e.name,
            ",".join(e.kinds) or "-",
            (e.description.splitlines() or [""])[0],
            builder_params(e.builder),
        )
        for e in registry
    ]


def builder_params(builder: Any) -> tuple[Param, ...]:
    """The parameters of ``builder`` (a class or function) that have a default: those a
    config sets.  The others polymodal supplies (an encoder's modality spec, a fusion's
    input sizes, a task's run config)."""
    return tuple(
        (p.name, _annotation(p.annotation), yaml_value(p.default))
        for p in inspect.signature(builder).parameters.values()
        if p.default is not inspect.Parameter.empty
    )


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")


def yaml_value(value: Any) -> str:
    """``value`` as it is written in a YAML config: ``null``, ``true``, ``[32, 64]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return value if value and value.strip() == value else repr(value)
    return repr(value)


#: Width of ``list``'s wrapped parameter lines.
WIDTH = 100


def format_rows(rows: Sequence[Row]) -> list[str]:
    """A header and, per component, a ``name  input  description`` line in aligned columns,
    then its parameters as ``name=default``, wrapped and indented under the description."""
    if not rows:
        return []
    width = max(len("name"), *(len(r[0]) for r in rows))
    kwidth = max(len("input"), *(len(r[1]) for r in rows))
    indent = " " * (width + kwidth + 4)
    lines = [f"{'name':<{width}}  {'input':<{kwidth}}  description"]
    for name, kinds, desc, params in rows:
        lines.append(f"{name:<{width}}  {kinds:<{kwidth}}  {desc}")
        if params:
            text = "  ".join(f"{p}={d}" for p, _, d in params)
            lines += textwrap.wrap(
                text,
                max(WIDTH, len(indent) + 40),
                initial_indent=indent,
                subsequent_indent=indent,
                break_on_hyphens=False,
            )
    return lines


def format_component(what: str, row: Row) -> list[str]:
    """One component in full: what it accepts, its description, each parameter's type and
    default, and where a config sets them."""
    name, kinds, desc, params = row
    where = {
        "encoders": "model.encoders.<modality>",
        "fusions": "model.fusion",
    }.get(what)
    lines = [f"{name} ({what[:-1]}; input: {kinds})", f"  {desc}"]
    if not params:
        if what == "tasks":
            lines.append(f"  settings: the run config's sections (task: {name})")
        return lines
    lines.append(f"  parameters ({where}.params; name: type = default):")
    pwidth = max(len(p) for p, _, _ in params) + 1
    lines += [f"    {p + ':':<{pwidth}} {t or '-'} = {d}" for p, t, d in params]
    return lines


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
        "Param = tuple[str, str, str]  # name, type, default (as YAML)\n"
        "CATALOGUE: dict[str, tuple[tuple[str, str, str, tuple[Param, ...]], ...]] = {\n"
        f"{body}}}\n"
    )


def run(args: argparse.Namespace) -> int:
    from polymodal.cli.catalogue import CATALOGUE

    rows = CATALOGUE[args.what]
    if args.name is not None:
        found = [r for r in rows if r[0] == args.name]
        if not found:
            from polymodal.cli.main import CLIError
            from polymodal.errors import unknown_name_error

            error = unknown_name_error(args.what[:-1], args.name, [r[0] for r in rows])
            raise CLIError(f"{error} (polymodal list {args.what} shows them all.)")
        print("\n".join(format_component(args.what, found[0])))
        return 0
    lines = format_rows(rows)
    if not lines:
        print(f"No {args.what} are registered.")
        return 0
    print("\n".join(lines))
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list registered encoders, fusions or training tasks, with their parameters",
        description="List registered components: what each accepts, a one-line description "
        "and its parameters with their defaults (set them under params: in a run config).",
    )
    parser.add_argument("what", choices=sorted(LISTABLE), help="which registry to list")
    parser.add_argument(
        "name",
        nargs="?",
        default=None,
        metavar="NAME",
        help="show one component in full: each parameter's type and default",
    )
    parser.set_defaults(func=run)


if __name__ == "__main__":  # pragma: no cover
    CATALOGUE_FILE.write_text(catalogue_source(), encoding="utf-8")
    print(f"wrote {CATALOGUE_FILE}")
