"""Damaged inputs through the library: a valid value or polymodal's own error, never more.

The cases are ``benchmarks/fuzz.py``'s generators (damaged images, audio, video, time
series, feature files, text cells, manifests, configs and checkpoints); hypothesis draws
which generators and seeds, derandomised so the suite is deterministic.  Each batch runs
in a worker process with an address-space limit, as the benchmark does, so a regression
that reads without bound fails here instead of exhausting the machine.  The long run with
counts is ``python benchmarks/fuzz.py``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fuzz

GOOD = ("ok", "clear_error")


@pytest.fixture(scope="module")
def worker(data_root: Path) -> Iterator[tuple[ProcessPoolExecutor, str]]:
    with tempfile.TemporaryDirectory(prefix="polymodal-fuzz-test-") as root:
        pool = ProcessPoolExecutor(
            1, mp_context=get_context("spawn"), initializer=fuzz._init_worker, initargs=(root, 1024)
        )
        with pool:
            yield pool, root


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    jobs=st.lists(
        st.tuples(st.sampled_from(sorted(fuzz.GENERATORS)), st.integers(0, 2**31 - 1)),
        min_size=25,
        max_size=25,
    )
)
def test_damaged_inputs_end_in_a_value_or_a_clear_error(
    worker: tuple[ProcessPoolExecutor, str], jobs: list[tuple[str, int]]
) -> None:
    pool, root = worker
    cases = [(i, family, seed) for i, (family, seed) in enumerate(jobs)]
    results = pool.submit(fuzz.run_chunk, cases, root, 30.0).result()
    bad = [r for r in results if r["outcome"] not in GOOD]
    assert not bad, "\n".join(
        f"{r['family']} {r['damage']} seed {r['seed']}: {r['outcome']}: {r['detail']}" for r in bad
    )


def test_the_oracle_tells_the_outcomes_apart(tmp_path: Path) -> None:
    """The classification can fail: silent acceptance, a foreign traceback, an unnamed error."""

    def foreign() -> None:
        raise KeyError("raised outside polymodal")

    def accepted() -> int:
        return 1

    silent = fuzz.Case("x", "d", accepted, True, None, ("f.csv",))
    assert fuzz.classify(silent, 5)[0] == "silent"
    assert fuzz.classify(fuzz.Case("x", "d", foreign, True, None, ("f",)), 5)[0] == "traceback"
    out_of_range = fuzz.Case("x", "d", lambda: [float("nan")], False, fuzz._finite, ("f",))
    assert fuzz.classify(out_of_range, 5)[0] == "silent"
    from polymodal.data.decode import decode_image

    missing = tmp_path / "gone.png"
    named = fuzz.Case("image", "missing", lambda: decode_image(missing), True, None, ("gone.png",))
    assert fuzz.classify(named, 5)[0] == "clear_error"
    unnamed = fuzz.Case("image", "missing", lambda: decode_image(missing), True, None, ("x.png",))
    assert fuzz.classify(unnamed, 5)[0] == "traceback"
