"""LossSum: the epoch's training loss summed on the device, read at flush points."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from polymodal.training.steps import LossSum


def test_flush_adds_the_weighted_sum_and_starts_over() -> None:
    state = SimpleNamespace(loss_sum=1.0, loss_count=2)
    acc = LossSum(torch.device("cpu"), step=4)
    acc.add(torch.tensor(2.0), 3)
    acc.add(torch.tensor(0.5), 2)
    acc.flush(state, lr=1e-3)
    assert state.loss_sum == pytest.approx(1.0 + 6.0 + 1.0)
    assert state.loss_count == 7
    acc.flush(state, lr=1e-3)  # nothing new: unchanged
    assert state.loss_count == 7
    acc.add(torch.tensor(1.0), 1)
    acc.flush(state, lr=1e-3)
    assert state.loss_sum == pytest.approx(9.0) and state.loss_count == 8


def test_a_non_finite_loss_names_the_steps_since_the_last_flush() -> None:
    state = SimpleNamespace(loss_sum=0.0, loss_count=0)
    acc = LossSum(torch.device("cpu"), step=10)
    acc.add(torch.tensor(1.0), 1)
    acc.flush(state, lr=0.1)  # step 11 read
    acc.add(torch.tensor(1.0), 1)
    acc.add(torch.tensor(math.nan), 1)
    with pytest.raises(
        FloatingPointError, match=r"nan in steps 12-13\. Lower optim.lr \(now 0.1\)"
    ):
        acc.flush(state, lr=0.1)
    one = LossSum(torch.device("cpu"), step=0)
    one.add(torch.tensor(math.inf), 4)
    with pytest.raises(FloatingPointError, match="inf in step 1\\."):
        one.flush(state, lr=0.1)


def test_add_keeps_no_graph() -> None:
    w = torch.ones((), requires_grad=True)
    acc = LossSum(torch.device("cpu"), step=0)
    acc.add(w * 2, 1)
    assert not acc.total.requires_grad
