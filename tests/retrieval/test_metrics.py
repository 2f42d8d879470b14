"""Retrieval metrics against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from polymodal.retrieval import rank_metrics, relevance_matrix, retrieval_metrics

# 2 images x 4 captions; image 0 has captions {0, 1}, image 1 has {2, 3}.
SIM = torch.tensor([[0.9, 0.1, 0.8, 0.3], [0.2, 0.7, 0.6, 0.5]])
GROUND_TRUTH = [[0, 1], [2, 3]]


def test_two_directions_by_hand() -> None:
    m = retrieval_metrics(SIM, GROUND_TRUTH)
    # i2t. Image 0 ranks c0, c2, c3, c1 -> hits at 1 and 4: AP = (1/1 + 2/4) / 2 = 3/4.
    #      Image 1 ranks c1, c2, c3, c0 -> hits at 2 and 3: AP = (1/2 + 2/3) / 2 = 7/12.
    expected_i2t = {
        "i2t_r@1": 0.5,
        "i2t_r@5": 1.0,
        "i2t_r@10": 1.0,
        "i2t_median_rank": 1.5,
        "i2t_mean_rank": 1.5,
        "i2t_map": (3 / 4 + 7 / 12) / 2,
    }
    # t2i. c0 -> image 0 first; c1 -> second; c2 -> second; c3 -> first.
    expected_t2i = {
        "t2i_r@1": 0.5,
        "t2i_r@5": 1.0,
        "t2i_r@10": 1.0,
        "t2i_median_rank": 1.5,
        "t2i_mean_rank": 1.5,
        "t2i_map": (1 + 0.5 + 0.5 + 1) / 4,
    }
    assert m.keys() == expected_i2t.keys() | expected_t2i.keys()
    for key, value in {**expected_i2t, **expected_t2i}.items():
        assert m[key] == pytest.approx(value), key


def test_ties_keep_item_order() -> None:
    m = rank_metrics(torch.zeros(3, 3), torch.eye(3, dtype=torch.bool), ks=(1, 2))
    # stable order 0, 1, 2 -> query i's item is at rank i + 1
    assert m == pytest.approx(
        {
            "r@1": 1 / 3,
            "r@2": 2 / 3,
            "median_rank": 2.0,
            "mean_rank": 2.0,
            "map": (1 + 1 / 2 + 1 / 3) / 3,
        }
    )


def test_perfect_retrieval() -> None:
    m = retrieval_metrics(torch.eye(4), [[0], [1], [2], [3]], prefixes=("a2v", "v2a"), ks=(1,))
    assert m == {
        "a2v_r@1": 1.0,
        "a2v_median_rank": 1.0,
        "a2v_mean_rank": 1.0,
        "a2v_map": 1.0,
        "v2a_r@1": 1.0,
        "v2a_median_rank": 1.0,
        "v2a_mean_rank": 1.0,
        "v2a_map": 1.0,
    }


def test_list_and_bool_ground_truth_and_chunking_agree() -> None:
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(7, 12, generator=g)
    lists = [[i, i + 7] if i + 7 < 12 else [i] for i in range(7)]
    mask = relevance_matrix(lists, 7, 12)
    assert int(mask.sum()) == 12
    assert retrieval_metrics(sim, lists) == retrieval_metrics(sim, mask)
    assert rank_metrics(sim, mask, chunk_size=2) == pytest.approx(rank_metrics(sim, mask))


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"1 queries have no relevant item \(first: query 1\)"):
        rank_metrics(SIM, [[0], []])
    with pytest.raises(ValueError, match=r"t2i direction: 1 queries have no relevant item"):
        retrieval_metrics(SIM, [[0, 1], [2]])  # caption 3 belongs to no image
    with pytest.raises(
        ValueError, match=r"query_to_items\[1\] holds 4, but item indices must be ints in \[0, 4\)"
    ):
        retrieval_metrics(SIM, [[0], [4]])
    with pytest.raises(ValueError, match=r"one list of relevant item indices per query \(2\)"):
        retrieval_metrics(SIM, [[0]])
    with pytest.raises(ValueError, match=r"must be a \(2, 4\) bool tensor"):
        retrieval_metrics(SIM, torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"'prefixes' must be two non-empty names"):
        retrieval_metrics(SIM, GROUND_TRUTH, prefixes=("i2t",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'sim' must be a \(Q, N\) tensor, got \(4,\)"):
        retrieval_metrics(SIM[0], GROUND_TRUTH)
    with pytest.raises(ValueError, match=r"'ks' must be a non-empty list of ints >= 1"):
        rank_metrics(SIM, GROUND_TRUTH, ks=(0,))
