"""``AttentionPool``: mean pooling at init, weights per head over the steps, masks, errors."""

from __future__ import annotations

import pytest
import torch

from polymodal.layers import AttentionPool


def _x(b: int = 3, length: int = 5, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, length, d, generator=torch.Generator().manual_seed(seed))


def test_a_new_pool_is_mean_pooling() -> None:
    x = _x()
    torch.testing.assert_close(AttentionPool(8, 4)(x), x.mean(dim=1))
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 4 + [True]])
    out = AttentionPool(8, 2)(x, mask)
    torch.testing.assert_close(out[1], x[1, :2].mean(dim=0))
    torch.testing.assert_close(out[2], x[2, 4])  # the one valid step


def test_each_head_weighs_the_steps_of_its_own_channels() -> None:
    pool = AttentionPool(4, num_heads=2)
    x = torch.zeros(1, 3, 4)
    x[0, 1, 0] = 1.0  # step 1 stands out in channel 0 (head 0's channels are 0-1)
    with torch.no_grad():
        pool.score.weight.zero_()
        pool.score.weight[0, 0] = 50.0  # head 0 scores a step by its (normalised) channel 0
    x[0, :, 2:] = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # head 1's channels
    out = pool(x)[0]
    # head 0 looks at step 1 alone; head 1 (scores zero) averages its channels over steps
    torch.testing.assert_close(out[:2], x[0, 1, :2], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[2:], x[0, :, 2:].mean(dim=0))


def test_gradients_reach_the_scores_and_errors_name_the_fix() -> None:
    pool = AttentionPool(8, 4)
    (pool(_x()) * torch.arange(8.0)).sum().backward()
    assert pool.score.weight.grad is not None and pool.score.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"dim must be divisible by num_heads, got dim=10"):
        AttentionPool(10, 4)
