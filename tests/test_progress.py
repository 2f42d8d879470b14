"""Progress: a bar on a terminal, log lines with counts and ETA elsewhere, or nothing."""

from __future__ import annotations

import logging

import pytest

from polymodal.progress import progress


def test_off_a_terminal_it_logs_counts_shares_and_an_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="polymodal.progress")
    items = list(progress(range(4), desc="embedding x", unit="batches", terminal=False, every=0))
    assert items == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("embedding x: 1/4 batches (25%)") and "ETA" in lines[0]
    assert lines[-1].startswith("embedding x: 4/4 batches (100%)")
    caplog.clear()
    assert list(progress(iter("ab"), desc="n", terminal=False, every=0)) == ["a", "b"]
    assert caplog.records[-1].getMessage().startswith("n: 2 items,")  # no total: a count


def test_it_can_be_switched_off(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="polymodal.progress")
    assert list(progress(range(3), terminal=False, every=0, enabled=False)) == [0, 1, 2]
    monkeypatch.setenv("POLYMODAL_PROGRESS", "0")
    assert list(progress(range(3), terminal=False, every=0)) == [0, 1, 2]
    assert not caplog.records


def test_on_a_terminal_it_draws_a_bar(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(3), desc="bar", terminal=True)) == [0, 1, 2]
    assert "bar" in capsys.readouterr().err


def test_a_script_without_logging_sees_the_lines_and_a_configured_one_decides() -> None:
    """Run in fresh interpreters: pytest configures logging itself."""
    import subprocess
    import sys

    code = (
        "from polymodal.progress import progress\n"
        "list(progress(range(3), desc='step', terminal=False, every=0))\n"
    )
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "step: 3/3 items (100%)" in bare.stderr
    quiet = "import logging\nlogging.basicConfig(level=logging.WARNING)\n" + code
    configured = subprocess.run(
        [sys.executable, "-c", quiet], capture_output=True, text=True, check=True
    )
    assert "step:" not in configured.stderr  # the application's WARNING level holds
