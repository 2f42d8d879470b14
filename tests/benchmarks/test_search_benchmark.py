"""The pure helpers of benchmarks/search.py: the numpy bound, recall@k, the vector sets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from polymodal.retrieval import ExactIndex
from search import clustered_vectors, numpy_search, random_vectors, recall_at_k


def _brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_bound_is_exact_top_k_in_order_across_tiles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = random_vectors(rng, 45, 8)
    queries = random_vectors(rng, 10, 8)
    # 7-vector tiles: the last one (3 vectors) is smaller than k; 3-query chunks
    found = numpy_search(base, queries, 5, q_chunk=3, n_chunk=7)
    assert found.shape == (10, 5) and found.dtype == np.int64
    np.testing.assert_array_equal(found, _brute_force(base, queries, 5))


def test_recall_at_k_counts_the_true_top_k_among_the_first_k_found() -> None:
    truth = np.array([[0, 1], [2, 3]])
    assert recall_at_k(truth, truth) == 1.0
    assert recall_at_k(truth[:, ::-1], truth) == 1.0  # order within the top k is free
    assert recall_at_k(np.array([[0, 9], [8, 9]]), truth) == 0.25
    # only the first k found ids count
    assert recall_at_k(np.array([[9, 8, 0, 1], [2, 3, 0, 1]]), truth) == 0.5


def test_vector_sets_are_unit_seeded_and_independent_of_the_block_size() -> None:
    a = random_vectors(np.random.default_rng(3), 50, 16, block=7)
    b = random_vectors(np.random.default_rng(3), 50, 16, block=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert a.dtype == np.float32
    rng = np.random.default_rng(4)
    centres = random_vectors(rng, 3, 16)
    x = clustered_vectors(rng, 200, centres, sigma=0.1)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    assert float((x @ centres.T).max(axis=1).min()) > 0.9  # each near its centre


def test_exact_index_matches_the_numpy_bound() -> None:
    rng = np.random.default_rng(5)
    base, queries = random_vectors(rng, 300, 16), random_vectors(rng, 20, 16)
    index = ExactIndex(16)
    index.add(base, [str(i) for i in range(300)], modality="vector")
    found = index.search(queries, 10).indices.numpy()
    assert recall_at_k(found, numpy_search(base, queries, 10, n_chunk=64)) == 1.0
