"""Seed ensembles: :func:`polymodal.inference.ensemble_predictions` against hand-worked
numbers, and ``polymodal evaluate RUN RUN`` (the CLI end to end is in
``tests/robustness/test_curves.py``)."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.inference import Predictions, ensemble_predictions


def _pred(outputs: list[list[float]], targets: list[int] | None = (0, 1)) -> Predictions:  # type: ignore[assignment]
    t = None if targets is None else torch.tensor(list(targets))
    return Predictions(["a", "b"], torch.tensor(outputs), t)


def test_classification_averages_probabilities() -> None:
    # example a: p = softmax([0, 0]) = (.5, .5) and softmax([log 3, 0]) = (.75, .25)
    one = _pred([[0.0, 0.0], [2.0, 0.0]])
    two = _pred([[math.log(3.0), 0.0], [0.0, 2.0]])
    ens = ensemble_predictions([one, two], "classification")
    assert ens.ids == ["a", "b"] and torch.equal(ens.targets, one.targets)  # type: ignore[arg-type]
    torch.testing.assert_close(ens.outputs[0].exp(), torch.tensor([0.625, 0.375]))
    # b: the two models disagree symmetrically, so the mean is (.5, .5), not either argmax
    torch.testing.assert_close(ens.outputs[1].exp(), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(ens.outputs.softmax(-1), ens.outputs.exp())  # log-probabilities
    # one prediction is its own ensemble (as probabilities)
    torch.testing.assert_close(
        ensemble_predictions([one], "classification").outputs.softmax(-1), one.outputs.softmax(-1)
    )


def test_regression_and_multilabel() -> None:
    a, b = _pred([[1.0], [3.0]]), _pred([[2.0], [5.0]])
    torch.testing.assert_close(
        ensemble_predictions([a, b], "regression").outputs, torch.tensor([[1.5], [4.0]])
    )
    logit = math.log(0.8 / 0.2)
    c, d = _pred([[0.0, logit], [0.0, 0.0]]), _pred([[logit, logit], [0.0, 0.0]])
    probs = ensemble_predictions([c, d], "multilabel").outputs.sigmoid()
    torch.testing.assert_close(probs, torch.tensor([[0.65, 0.8], [0.5, 0.5]]))


def test_refuses_predictions_on_other_examples() -> None:
    one = _pred([[0.0, 0.0], [0.0, 0.0]])
    other_ids = Predictions(["b", "a"], one.outputs, one.targets)
    with pytest.raises(ValueError, match="prediction 1 is on other examples than prediction 0"):
        ensemble_predictions([one, other_ids], "classification")
    with pytest.raises(ValueError, match="prediction 1 has other targets"):
        ensemble_predictions([one, _pred([[0.0, 0.0], [0.0, 0.0]], [1, 1])], "classification")
    with pytest.raises(ValueError, match="got no predictions"):
        ensemble_predictions([], "classification")
