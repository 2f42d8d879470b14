"""ExactIndex's blocked search with the fused top-k: exact against a brute-force top-k.

The shapes here are chosen so that every path of the selection runs: a first chunk reduced
through its top groups (C >= 4 * k * 16), later chunks through the threshold on group
maxima, a ragged last chunk and a ragged last query block (plain top-k).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from polymodal.retrieval import ExactIndex, load_index


def unit(n: int, d: int, seed: int) -> Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=1)


def build(vectors: Tensor, **kwargs: object) -> ExactIndex:
    index = ExactIndex(vectors.shape[1], **kwargs)  # type: ignore[arg-type]
    index.add(vectors, [str(i) for i in range(len(vectors))], modality="vector")
    return index


def check_exact(index: ExactIndex, vectors: Tensor, queries: Tensor, k: int) -> None:
    """Scores equal the brute-force top k; every index is distinct and scores its score."""
    result = index.search(queries, k)
    all_scores = queries @ vectors.T  # (Q, N) (inputs already unit for cosine)
    expected = all_scores.topk(k, dim=1).values
    torch.testing.assert_close(result.scores, expected, atol=1e-5, rtol=0)
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()  # best first
    own = all_scores.gather(1, result.indices)  # the score of each returned index
    torch.testing.assert_close(own, result.scores, atol=1e-5, rtol=0)
    for row in result.indices.tolist():
        assert len(set(row)) == len(row) and min(row) >= 0


@pytest.mark.parametrize(
    ("n", "chunk_size", "query_block", "k"),
    [
        (5000, 1024, 7, 5),  # grouped chunks, ragged last chunk (904) and last block
        (4096, 1024, 64, 10),  # chunks of exactly 1024: the grouped paths only
        (3000, 640, 3, 10),  # C = 4 * k * 16, the smallest grouped first chunk
        (3000, 500, 16, 10),  # C not a multiple of the group: plain top-k everywhere
        (2000, 4096, 5, 1),  # one chunk larger than the collection
    ],
)
def test_blocked_search_is_exact(n: int, chunk_size: int, query_block: int, k: int) -> None:
    vectors, queries = unit(n, 24, 0), unit(37, 24, 1)
    index = build(vectors, chunk_size=chunk_size, query_block=query_block)
    check_exact(index, vectors, queries, k)
    plain = (queries @ vectors.T).topk(k, dim=1).indices
    # random data has no ties, so the indices are the brute-force ones too
    assert index.search(queries, k).indices.tolist() == plain.tolist()


def test_ties_keep_the_top_scores() -> None:
    """Each of 40 vectors stored 100 times: every top-k is a run of equal scores."""
    distinct = unit(40, 16, 2)
    vectors = distinct.repeat(100, 1)  # (4000, 16), item i equals item i % 40
    queries = torch.cat([unit(9, 16, 3), distinct[:3]])  # 3 queries equal to an item
    index = build(vectors, chunk_size=1024, query_block=4)
    check_exact(index, vectors, queries, 10)
    found = index.search(distinct[:3], 10).indices
    assert ((found % 40) == torch.arange(3)[:, None]).all()  # all 10 are copies of itself


def test_scores_growing_along_the_collection() -> None:
    """Every chunk beats the running k-th best (the worst case of the threshold path)."""
    n = 6000
    vectors = torch.zeros(n, 8)
    vectors[:, 0] = torch.arange(1, n + 1, dtype=torch.float32)
    vectors[:, 1] = 1.0
    index = build(vectors, metric="ip", chunk_size=1024, query_block=2)
    result = index.search(torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0]] * 3), 7)
    assert result.indices.tolist() == [list(range(n - 1, n - 8, -1))] * 3
    assert result.scores[0].tolist() == [float(i) for i in range(n, n - 7, -1)]


@pytest.mark.parametrize("k", [640, 3000, 10_000])
def test_large_k_and_k_beyond_the_collection(k: int) -> None:
    vectors, queries = unit(3000, 16, 4), unit(5, 16, 5)
    index = build(vectors, chunk_size=1024, query_block=2)
    result = index.search(queries, k)
    assert result.indices.shape == (5, min(k, 3000))
    check_exact(index, vectors, queries, min(k, 3000))


def test_query_block_is_saved_and_checked(tmp_path: object) -> None:
    index = build(unit(50, 8, 6), chunk_size=16, query_block=3)
    loaded = load_index(index.save(tmp_path / "idx"))  # type: ignore[operator]
    assert isinstance(loaded, ExactIndex)
    assert (loaded.chunk_size, loaded.query_block) == (16, 3)
    with pytest.raises(ValueError, match=r"ExactIndex: 'query_block' must be an int >= 1, got 0"):
        ExactIndex(8, query_block=0)
