from __future__ import annotations

import math

import pytest
import torch

from polymodal.metrics import (
    accuracy,
    auroc,
    compute_metrics,
    macro_f1,
    mae,
    multilabel_f1,
    pearson_r,
    task_metrics,
)


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs)


def test_accuracy_and_macro_f1_hand_computed() -> None:
    preds, targets = t(0, 1, 1, 0), t(0, 1, 0, 0)
    assert accuracy(preds, targets) == 0.75
    # class 0: tp 2, fp 0, fn 1 -> F1 4/5; class 1: tp 1, fp 1, fn 0 -> F1 2/3
    assert macro_f1(preds, targets) == pytest.approx((0.8 + 2 / 3) / 2)
    # an absent class 2 counts as F1 0 when num_classes says it exists
    assert macro_f1(preds, targets, num_classes=3) == pytest.approx((0.8 + 2 / 3) / 3)


def test_mae_and_pearson_hand_computed() -> None:
    assert mae(t(1, 2, 3), t(2, 2, 5)) == pytest.approx(1.0)
    assert pearson_r(t(1, 2, 3), t(2, 4, 6)) == pytest.approx(1.0)
    assert pearson_r(t(1, 2, 3), t(3, 2, 1)) == pytest.approx(-1.0)
    # deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): 4 / sqrt(5 * 5)
    assert pearson_r(t(1, 2, 3, 4), t(1, 3, 2, 4)) == pytest.approx(0.8)
    assert pearson_r(t(1, 1, 1), t(1, 2, 3)) == 0.0  # undefined -> 0, never NaN


def test_auroc_rank_based_with_ties() -> None:
    assert auroc(t(0.1, 0.4, 0.35, 0.8), t(0, 0, 1, 1)) == pytest.approx(0.75)
    # positive 0.5 ties both negatives (1/2 each), positive 0.9 beats both: 3/4
    assert auroc(t(0.5, 0.5, 0.5, 0.9), t(0, 1, 0, 1)) == pytest.approx(0.75)
    assert auroc(t(1, 1, 1, 1), t(0, 1, 0, 1)) == pytest.approx(0.5)
    assert auroc(t(0.9, 0.1), t(1, 0)) == 1.0


def test_auroc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="only one class"):
        auroc(t(0.1, 0.2), t(1, 1))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        auroc(t(0.1, 0.2), t(0, 2))


def test_multilabel_f1_hand_computed() -> None:
    preds = torch.tensor([[1, 0], [1, 1], [0, 0]])
    targets = torch.tensor([[1, 0], [0, 1], [1, 0]])
    out = multilabel_f1(preds, targets)
    # label 0: tp 1 fp 1 fn 1 -> 0.5; label 1: tp 1 -> 1.0; micro: tp 2 fp 1 fn 1 -> 4/6
    assert out["macro_f1"] == pytest.approx(0.75)
    assert out["micro_f1"] == pytest.approx(2 / 3)


def test_compute_metrics_per_task() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    cls = compute_metrics("classification", logits, t(0, 1, 0, 0).long())
    assert set(cls) == {"accuracy", "macro_f1", "weighted_f1", "auroc"}
    assert cls["accuracy"] == 0.75
    # positive-class probabilities rank: ex2 > ex1 > ex3 > ex0; the one positive (ex1)
    # beats ex0 and ex3 but not ex2 -> 2/3
    assert cls["auroc"] == pytest.approx(2 / 3)
    three = compute_metrics("classification", torch.randn(5, 3), t(0, 1, 2, 0, 1).long())
    assert "auroc" not in three
    one_class = compute_metrics("classification", logits, t(1, 1, 1, 1).long())
    assert "auroc" not in one_class

    reg = compute_metrics("regression", torch.tensor([[1.0], [2.0], [3.0]]), t(2, 2, 5))
    assert reg == {"mae": pytest.approx(1.0), "pearson_r": pytest.approx(math.sqrt(3) / 2)}

    ml = compute_metrics(
        "multilabel",
        torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]]),
        t(1, 0, 0, 1, 1, 0).view(3, 2),
    )
    assert ml == {"micro_f1": pytest.approx(2 / 3), "macro_f1": pytest.approx(0.75)}
    assert task_metrics("regression", 1) == ["mae", "pearson_r", "loss"]


def test_metric_input_errors() -> None:
    with pytest.raises(ValueError, match="preds has 2 values but targets has 3"):
        accuracy(t(0, 1), t(0, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        mae(t(), t())
    with pytest.raises(ValueError, match="Unknown task 'ranking'"):
        compute_metrics("ranking", t(0), t(0))
    with pytest.raises(ValueError, match=r"regression outputs must be \(N,\) or \(N, 1\)"):
        compute_metrics("regression", torch.zeros(3, 2), t(0, 1, 2))


def test_weighted_f1_hand_computed() -> None:
    from polymodal.metrics import weighted_f1

    preds = torch.tensor([0, 0, 1, 1, 2])
    targets = torch.tensor([0, 1, 1, 1, 2])
    # per-class F1: 2/3 (support 1), 0.8 (support 3), 1 (support 1)
    assert weighted_f1(preds, targets) == pytest.approx((2 / 3 + 0.8 * 3 + 1) / 5)
    # a predicted class absent from the targets weighs nothing (it only costs precision)
    assert weighted_f1(torch.tensor([3, 1]), torch.tensor([0, 1])) == pytest.approx(0.5)
    assert compute_metrics("classification", torch.eye(3)[[0, 0, 1, 1, 2]], targets)[
        "weighted_f1"
    ] == pytest.approx(weighted_f1(preds, targets))


def test_one_class_predictions_are_flagged() -> None:
    from polymodal.metrics import one_class_warning

    targets = torch.tensor([0, 1, 1, 0])
    msg = one_class_warning(torch.tensor([[0.1, 0.9]] * 4), targets, ["neg", "pos"])
    assert "predicts class 'pos' for all 4 examples (it is 50% of them)" in msg
    assert one_class_warning(torch.tensor([1, 0, 1, 1]), targets) == ""
    assert one_class_warning(torch.tensor([1, 1]), torch.tensor([1, 1])) == ""  # one class anyway
