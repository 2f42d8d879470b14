"""The command-line interface: the only place that parses arguments."""

from __future__ import annotations

import argparse
import logging
import re

# ``:func:`a.b``, ``:class:`~a.b.C```, ``:ref:`text <target>```: reST roles in docstrings
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`<]+?)\s*(?:<[^`>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def plain_text(text: str) -> str:
    """``text`` without reST markup, as a terminal shows it: roles become their target
    (``:func:`polymodal.train``` -> ``polymodal.train``; ``~`` keeps the last name),
    double-backtick literals lose their backticks and a paragraph's ``::`` becomes ``:``.
    """
    text = _ROLE.sub(lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], text)
    text = _LITERAL.sub(r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip reST markup (:func:`plain_text`) from the description, epilog and every help
    string of ``parser`` and of its subcommands, in place: the commands write their help
    from docstrings, which are reST."""
    seen: set[int] = set()
    todo = [parser]
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        p.description = plain_text(p.description) if p.description else p.description
        p.epilog = plain_text(p.epilog) if p.epilog else p.epilog
        for action in p._actions:
            if isinstance(action.help, str):
                action.help = plain_text(action.help)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if isinstance(choice.help, str):
                        choice.help = plain_text(choice.help)
                todo.extend(action.choices.values())


def setup_logging() -> None:
    """Route the library's ``polymodal`` logger to stderr, plain messages, level INFO."""
    from polymodal.progress import add_stderr_handler

    log = logging.getLogger("polymodal")
    if not log.handlers:
        add_stderr_handler(log)
    log.setLevel(logging.INFO)
