"""Progress of long steps: a tqdm bar on a terminal, periodic log lines elsewhere.

A step that runs longer than a second (decoding, embedding, caching features, predicting)
wraps its loop in :func:`progress`.  On a terminal it shows a tqdm bar with its rate and
ETA; otherwise (a log file, CI, a notebook without a terminal) it logs a line every
``every`` seconds and at the end, with the count, the share done, the elapsed time and the
ETA, so that nothing runs silently for minutes.  ``POLYMODAL_PROGRESS=0`` turns both off.

Those lines (and the training loop's epoch lines) go through the ``polymodal`` logger.  An
application that configures logging decides where they go; one that does not (a script, a
notebook) would see nothing, so :func:`show_library_logs` gives the ``polymodal`` logger a
plain stderr handler in that case only; ``train`` and :func:`progress` call it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger("polymodal.progress")

#: Seconds between log lines when not on a terminal.
LOG_EVERY = 10.0


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream it was given: once that stream
    is replaced and closed (a test capturing output, an embedding application), every
    later record fails and prints a "Logging error" traceback on the new stderr.
    """

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # always the current sys.stderr


def add_stderr_handler(log: logging.Logger) -> None:
    """Give ``log`` a :class:`StderrHandler` printing plain messages."""
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)


def show_library_logs() -> None:
    """Print the library's INFO lines (epochs, progress) on stderr, as plain messages, when
    the application has configured no logging (no handler on the root logger or on
    ``polymodal``); otherwise change nothing."""
    log = logging.getLogger("polymodal")
    if log.handlers or logging.getLogger().handlers:
        return
    add_stderr_handler(log)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def progress(
    items: Iterable[T],
    total: int | None = None,
    desc: str = "",
    unit: str = "items",
    *,
    enabled: bool = True,
    every: float | None = None,
    terminal: bool | None = None,
) -> Iterator[T]:
    """Yield ``items``, reporting progress (see the module docstring).

    Args:
        items: what to iterate over.
        total: how many there are (default: ``len(items)`` when it has one).
        desc: what is being done (``"embedding image"``).
        unit: what is counted, plural (``"batches"``, ``"examples"``).
        enabled: ``False`` reports nothing.
        every: seconds between log lines off a terminal (default :data:`LOG_EVERY`; 0 logs
            every item).
        terminal: force the bar (``True``) or the log lines (``False``); default: a bar
            when standard error is a terminal.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled or os.environ.get("POLYMODAL_PROGRESS", "1") == "0":
        yield from items
        return
    if terminal is None:
        terminal = sys.stderr.isatty()
    if terminal:
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit, leave=False)
        return
    show_library_logs()
    interval = LOG_EVERY if every is None else every
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= interval and (total is None or done < total):
            last = now
            logger.info("%s", _line(desc, unit, done, total, now - start))
    if done and time.perf_counter() - start >= interval:
        logger.info("%s", _line(desc, unit, done, total, time.perf_counter() - start))


def _line(desc: str, unit: str, done: int, total: int | None, elapsed: float) -> str:
    what = desc or "progress"
    if total:
        eta = elapsed / done * (total - done) if done else math.inf
        return (
            f"{what}: {done:,}/{total:,} {unit} ({done / total:.0%}), {_eta(elapsed)} elapsed, "
            f"ETA {_eta(eta)}"
        )
    return f"{what}: {done:,} {unit}, {_eta(elapsed)} elapsed"


__all__ = ["LOG_EVERY", "StderrHandler", "add_stderr_handler", "progress", "show_library_logs"]
