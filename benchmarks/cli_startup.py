"""Start-up time of the ``polymodal`` command, next to ``python -c "import torch"``.

Each command runs as a fresh subprocess (``python -m polymodal ...``, the checkout's
``src`` first on ``PYTHONPATH``), ``--repeats`` times in interleaved rounds (every command
once per round, so machine noise hits all of them); the value is the median wall time,
the std the spread over the rounds.  A ``ratio`` record divides each median by the median
of ``import torch``: below 1 the command does not pay for torch.

``--baseline-src PATH`` also times another checkout's ``src`` (e.g. the commit before the
CLI imported torch lazily), as method ``<command> [baseline]``.

Run (about 90 s on 2 shared cores with a baseline)::

    git archive 1fa9e83 src | tar -x -C /tmp/base    # the CLI before lazy imports
    python benchmarks/cli_startup.py --baseline-src /tmp/base/src --baseline-label main@1fa9e83

Writes benchmarks/results/cli_startup.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, record, write_results

NAME = "cli_startup"
REFERENCE = "python -c 'import torch'"
#: label -> arguments after ``python``
COMMANDS: dict[str, list[str]] = {
    REFERENCE: ["-c", "import torch"],
    "polymodal --help": ["-m", "polymodal", "--help"],
    "polymodal train --help": ["-m", "polymodal", "train", "--help"],
    "polymodal list encoders": ["-m", "polymodal", "list", "encoders"],
}


def _env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    return env


def time_once(args: Sequence[str], env: dict[str, str]) -> float:
    """Wall seconds of one ``python ARGS`` subprocess (output discarded; must exit 0)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL, cwd=REPO_ROOT
    )
    return time.perf_counter() - start


def measure(
    commands: dict[str, list[str]], sources: dict[str, Path], repeats: int
) -> dict[tuple[str, str], list[float]]:
    """``(command, source label) -> seconds of each round``, after one warm-up run each."""
    envs = {label: _env(src) for label, src in sources.items()}
    jobs = [(c, s) for c in commands for s in sources if c != REFERENCE or s == "this checkout"]
    for c, s in jobs:  # warm the file cache
        time_once(commands[c], envs[s])
    times: dict[tuple[str, str], list[float]] = {job: [] for job in jobs}
    for _ in range(repeats):
        for c, s in jobs:
            times[(c, s)].append(time_once(commands[c], envs[s]))
    return times


def to_records(times: dict[tuple[str, str], list[float]], repeats: int) -> list[dict[str, Any]]:
    reference = statistics.median(times[(REFERENCE, "this checkout")])
    records = []
    for (command, source), runs in times.items():
        method = command if source == "this checkout" else f"{command} [baseline]"
        median = statistics.median(runs)
        std = statistics.stdev(runs) if len(runs) > 1 else None
        common = {"dataset": "-", "method": method, "n_seeds": repeats, "code": source}
        records.append(record(NAME, metric="seconds", value=median, std=std, **common))
        if command != REFERENCE:
            ratio = median / reference
            records.append(record(NAME, metric="ratio", value=ratio, **common))
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7, help="rounds (default 7)")
    parser.add_argument(
        "--baseline-src", type=Path, default=None, help="another checkout's src to time too"
    )
    parser.add_argument(
        "--baseline-label",
        default=None,
        help="what the baseline is, e.g. 'main@1fa9e83' (default: its path)",
    )
    parser.add_argument("--results-dir", default=None, help="default: benchmarks/results")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    sources = {"this checkout": REPO_ROOT / "src"}
    if args.baseline_src is not None:
        label = args.baseline_label or str(args.baseline_src)
        sources[f"baseline {label}"] = args.baseline_src.resolve()
    times = measure(COMMANDS, sources, args.repeats)
    records = to_records(times, args.repeats)
    notes = (
        "Median wall seconds of a fresh subprocess over the rounds (std: spread over rounds); "
        f"ratio: that median over the median of {REFERENCE}. Busy shared cores stretch "
        "every number; the ratios are the comparable part."
    )
    json_path, md_path = write_results(
        NAME, records, title="CLI start-up time", notes=notes, results_dir=args.results_dir
    )
    for r in records:
        print(f"{r['method']:<42} {r['metric']:<8} {r['value']:.3f}")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
