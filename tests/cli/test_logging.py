"""The CLI's log goes to the stderr of the moment, not to the one of its first command."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from polymodal.cli import setup_logging


def test_log_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    log = logging.getLogger("polymodal")
    monkeypatch.setattr(log, "handlers", [])  # as in a fresh process; restored afterwards
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging()  # a first command, e.g. under an output capture that is then closed
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    setup_logging()  # a later command: the handler is not added twice
    logging.getLogger("polymodal.training").info("features ready")
    assert second.getvalue() == "features ready\n"
    assert len(log.handlers) == 1
