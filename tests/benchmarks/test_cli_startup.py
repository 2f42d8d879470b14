"""benchmarks/cli_startup.py: rounds of subprocess timings become seconds and ratio records."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from cli_startup import COMMANDS, REFERENCE, measure, to_records


def test_records_hold_medians_and_ratios_to_the_reference() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    commands = {REFERENCE: ["-c", "pass"], "polymodal --version": ["-m", "polymodal", "--version"]}
    times = measure(commands, {"this checkout": src}, repeats=2)
    assert {k: len(v) for k, v in times.items()} == {
        (REFERENCE, "this checkout"): 2,
        ("polymodal --version", "this checkout"): 2,
    }
    records = to_records(times, repeats=2)
    by = {(r["method"], r["metric"]): r["value"] for r in records}
    assert set(by) == {
        (REFERENCE, "seconds"),
        ("polymodal --version", "seconds"),
        ("polymodal --version", "ratio"),
    }
    ratio = by[("polymodal --version", "seconds")] / by[(REFERENCE, "seconds")]
    assert abs(by[("polymodal --version", "ratio")] - ratio) < 1e-12
    assert all(r["metric"] in ("seconds", "ratio") and r["n_seeds"] == 2 for r in records)


def test_the_benchmark_times_the_commands_the_issue_names() -> None:
    assert set(COMMANDS) == {
        REFERENCE,
        "polymodal --help",
        "polymodal train --help",
        "polymodal list encoders",
    }
