"""``polymodal.layers.dropout``: F.dropout's contract, with masks from 16-bit random slices."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import polymodal.layers.dropout as dropout_module
from polymodal.layers.dropout import LEVELS, Dropout, dropout


@pytest.fixture(autouse=True)
def _masks_from_random_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny tensors take the 16-bit path too, unless a test says otherwise."""
    monkeypatch.setattr(dropout_module, "MIN_ELEMENTS", 0)


def test_eval_and_zero_rate_are_the_identity() -> None:
    x = torch.randn(4, 5)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    module = Dropout(0.3).eval()
    assert torch.equal(module(x), x)


def test_kept_fraction_and_scale() -> None:
    torch.manual_seed(0)
    x = torch.ones(1_000_003)  # an odd size: the last random integer is only partly used
    y = dropout(x, 0.2)
    kept = y != 0
    keep = 1 - round(0.2 * LEVELS) / LEVELS
    # kept elements carry exactly 1 / P(keep), so E[y] = x
    assert torch.equal(y[kept], torch.full_like(y[kept], 1 / keep))
    # 1M Bernoulli(0.8) draws: std of the fraction 4e-4; 5 std
    assert abs(kept.double().mean().item() - 0.8) < 2e-3
    # every one of the four 16-bit slices of each random integer is uniform
    for k in range(4):
        assert abs(kept[k::4].double().mean().item() - 0.8) < 4e-3


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mean_is_kept(p: float) -> None:
    torch.manual_seed(1)
    x = torch.full((400_000,), 2.0)
    # std of the mean: 2 sqrt(p / (1 - p) / n); 5 std
    tol = 10 * (p / (1 - p) / x.numel()) ** 0.5
    assert abs(dropout(x, p).mean().item() - 2.0) < tol


def test_seeded_and_distinct_between_calls() -> None:
    x = torch.randn(64, 33)
    torch.manual_seed(7)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(7)
    assert torch.equal(dropout(x, 0.5), a)
    assert not torch.equal(a, b)


def test_gradient_is_the_mask() -> None:
    torch.manual_seed(2)
    x = torch.randn(3, 7, 11, requires_grad=True)
    y = dropout(x, 0.4)
    y.backward(torch.ones_like(y))
    assert x.grad is not None
    ratio = torch.where(y != 0, y / x.detach(), torch.zeros_like(y))
    torch.testing.assert_close(x.grad, ratio)
    assert 0 < (x.grad == 0).sum() < x.numel()


def test_non_contiguous_input_and_dtype() -> None:
    torch.manual_seed(3)
    x = torch.randn(8, 6).t()  # (6, 8), not contiguous
    y = dropout(x, 0.5)
    assert y.shape == (6, 8)
    assert torch.equal(y != 0, (y != 0) & (x != 0))
    torch.testing.assert_close(y[y != 0], 2 * x[y != 0])
    xb = torch.randn(100, dtype=torch.bfloat16)
    assert dropout(xb, 0.5).dtype == torch.bfloat16


def test_inplace() -> None:
    torch.manual_seed(4)
    x = torch.randn(50)
    before = x.clone()
    out = Dropout(0.5, inplace=True).train()(x)
    assert out.data_ptr() == x.data_ptr()
    assert (x == 0).any() and torch.equal(x[x != 0], 2 * before[x != 0])


def test_all_dropped_and_extreme_rates_use_torch() -> None:
    x = torch.randn(10)
    assert torch.equal(dropout(x, 1.0), torch.zeros(10))
    # 1e-6 rounds to no 16-bit threshold: torch's own dropout draws it
    torch.manual_seed(5)
    ours = dropout(x, 1e-6)
    torch.manual_seed(5)
    assert torch.equal(ours, F.dropout(x, 1e-6))


def test_small_tensors_use_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dropout_module, "MIN_ELEMENTS", 100)
    x = torch.randn(99)
    torch.manual_seed(8)
    ours = dropout(x, 0.3)
    torch.manual_seed(8)
    assert torch.equal(ours, F.dropout(x, 0.3))
    x = torch.randn(100)
    torch.manual_seed(8)
    ours = dropout(x, 0.3)
    torch.manual_seed(8)
    assert not torch.equal(ours, F.dropout(x, 0.3))


class _TwoDropouts(nn.Module):
    """linear -> dropout -> linear -> dropout, and the input dropped twice more."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(6, 6), nn.Linear(6, 6)
        self.d1, self.d2, self.d3, self.d4 = (Dropout(0.5) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.d2(self.l2(self.d1(torch.tanh(self.l1(x)))))
        return h + self.d3(x) * self.d4(x)  # two dropouts of one tensor: two masks


@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs g++ here")
def test_compiled_masks_are_eagers_and_are_saved_for_the_backward() -> None:
    """torch.compile draws the eager masks from the same seed; the backward uses the forward's
    masks (a recomputed mask would give other gradients); two sites are two masks (merged
    into one, d3(x) * d4(x) would differ from eager)."""
    torch.manual_seed(0)
    model = _TwoDropouts()
    x = torch.randn(4, 6, requires_grad=True)
    outs, grads = [], []
    for fn in (model, torch.compile(model)):
        torch.manual_seed(9)
        y = fn(x)
        y.pow(2).sum().backward()
        assert x.grad is not None
        outs.append(y.detach())
        grads.append(x.grad.clone())
        x.grad = None
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(grads[1], grads[0])


def test_module_is_an_nn_dropout_and_rejects_bad_rates() -> None:
    assert isinstance(Dropout(0.1), nn.Dropout)
    assert Dropout(0.1).state_dict() == {}
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got -0.1"):
        dropout(torch.ones(2), -0.1)
