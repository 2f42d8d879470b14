"""The pure helpers of benchmarks/search.py: recall@k, vector sets, the PPCA mixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

_ENV = dict(os.environ)  # the script sets OpenBLAS/OpenMP variables on import
from search import fit_mixture, interleaved, random_unit, recall_at_k, sample_mixture  # noqa: E402

os.environ.clear()
os.environ.update(_ENV)


def test_recall_at_k_counts_the_true_top_k_among_the_first_k_found() -> None:
    truth = np.array([[0, 1], [2, 3]])
    assert recall_at_k(truth, truth) == 1.0
    assert recall_at_k(truth[:, ::-1], truth) == 1.0  # order within the top k is free
    assert recall_at_k(np.array([[0, 9], [8, 9]]), truth) == 0.25
    # only the first k found ids count
    assert recall_at_k(np.array([[9, 8, 0, 1], [2, 3, 0, 1]]), truth) == 0.5


def test_random_unit_vectors_are_unit_and_seeded() -> None:
    a = random_unit(np.random.default_rng(3), 50, 16)
    np.testing.assert_array_equal(a, random_unit(np.random.default_rng(3), 50, 16))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert a.dtype == np.float32


def test_interleaved_times_every_function_each_repeat() -> None:
    calls: list[str] = []
    seconds = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] * 3
    assert set(seconds) == {"a", "b"} and all(s >= 0 for s in seconds.values())


def test_mixture_samples_follow_the_fitted_clusters() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    centres = random_unit(rng, 4, 16)
    x = centres[rng.integers(0, 4, 800)] + 0.05 * rng.standard_normal((800, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    model = fit_mixture(x, clusters=4, rank=3)
    assert model.means.shape == (4, 16) and model.directions.shape == (4, 3, 16)
    np.testing.assert_allclose(model.weights.sum(), 1.0)
    draws = sample_mixture(model, 500, seed=1)
    assert draws.shape == (500, 16) and draws.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(draws, axis=1), 1.0, rtol=1e-5)
    assert float((draws @ centres.T).max(axis=1).min()) > 0.9  # each near a real centre
    np.testing.assert_array_equal(draws, sample_mixture(model, 500, seed=1))
