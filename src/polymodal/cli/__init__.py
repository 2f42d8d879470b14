"""The command-line interface: the only place that parses arguments."""

from __future__ import annotations

import logging
import sys


def setup_logging() -> None:
    """Route the library's ``polymodal`` logger to stderr, plain messages, level INFO."""
    log = logging.getLogger("polymodal")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
