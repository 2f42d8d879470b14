"""Evaluation metrics in plain torch (no scikit-learn).

Every metric takes 1-D tensors of predictions and targets of equal length and returns a
Python ``float``.  :func:`compute_metrics` picks the metrics that fit a task and maps a
model's raw outputs (logits) to predictions:

============== ========================== ===========================================
task           outputs                    metrics
============== ========================== ===========================================
classification (N, C) logits or (N,) ids  ``accuracy``, ``macro_f1``, ``weighted_f1``;
                                          ``auroc`` when C = 2
regression     (N,) or (N, 1) values      ``mae``, ``pearson_r``
multilabel     (N, K) logits              ``micro_f1``, ``macro_f1`` (threshold 0.5)
============== ========================== ===========================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from polymodal.data.modality import TASKS
from polymodal.errors import unknown_name_error

# Whether a larger value is better, for every metric a trainer can monitor.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "macro_f1": True,
    "weighted_f1": True,
    "micro_f1": True,
    "auroc": True,
    "pearson_r": True,
    "mae": False,
    "loss": False,
}


def task_metrics(task: str, num_outputs: int) -> list[str]:
    """The metric names :func:`compute_metrics` returns for ``task`` (plus ``"loss"``)."""
    if task == "classification":
        names = ["accuracy", "macro_f1", "weighted_f1"] + (["auroc"] if num_outputs == 2 else [])
    elif task == "regression":
        names = ["mae", "pearson_r"]
    elif task == "multilabel":
        names = ["micro_f1", "macro_f1"]
    else:
        raise unknown_name_error("task", task, list(TASKS))
    return [*names, "loss"]


def _check_pair(preds: Tensor, targets: Tensor, name: str) -> tuple[Tensor, Tensor]:
    preds = torch.as_tensor(preds).detach().cpu().reshape(-1)
    targets = torch.as_tensor(targets).detach().cpu().reshape(-1)
    if preds.numel() != targets.numel():
        raise ValueError(
            f"{name}: preds has {preds.numel()} values but targets has {targets.numel()}; "
            "pass one prediction per target."
        )
    if preds.numel() == 0:
        raise ValueError(f"{name}: got empty preds and targets; evaluate at least one example.")
    return preds, targets


def accuracy(preds: Tensor, targets: Tensor) -> float:
    """Fraction of ``preds`` (N,) equal to ``targets`` (N,)."""
    preds, targets = _check_pair(preds, targets, "accuracy")
    return float((preds.long() == targets.long()).double().mean())


def _f1(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Per-entry F1 = 2TP / (2TP + FP + FN); 0 where the denominator is 0."""
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(denom))


def _per_class_f1(preds: Tensor, targets: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class F1 and support (true examples) over ``classes``: two (C,) float64."""
    p = preds[:, None] == classes[None, :]  # (N, C)
    t = targets[:, None] == classes[None, :]
    tp = (p & t).sum(0).double()
    fp = (p & ~t).sum(0).double()
    fn = (~p & t).sum(0).double()
    return _f1(tp, fp, fn), t.sum(0).double()


def weighted_f1(preds: Tensor, targets: Tensor) -> float:
    """Mean of per-class F1 weighted by each class's support (its true examples), as
    scikit-learn's ``average="weighted"``: classes absent from ``targets`` weigh 0.

    Args:
        preds: (N,) predicted class ids.
        targets: (N,) true class ids.
    """
    preds, targets = _check_pair(preds, targets, "weighted_f1")
    preds, targets = preds.long(), targets.long()
    f1, support = _per_class_f1(preds, targets, torch.unique(targets))
    return float((f1 * support).sum() / support.sum())


def macro_f1(preds: Tensor, targets: Tensor, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over class ids.

    Args:
        preds: (N,) predicted class ids.
        targets: (N,) true class ids.
        num_classes: average over ``0 .. num_classes-1``; ``None`` averages over the classes
            that occur in ``preds`` or ``targets`` (as scikit-learn does).  A class with no
            true and no predicted example has F1 0.
    """
    preds, targets = _check_pair(preds, targets, "macro_f1")
    preds, targets = preds.long(), targets.long()
    if num_classes is None:
        classes = torch.unique(torch.cat([preds, targets]))
    else:
        classes = torch.arange(num_classes)
    p = preds[:, None] == classes[None, :]  # (N, C)
    t = targets[:, None] == classes[None, :]
    tp = (p & t).sum(0).double()
    fp = (p & ~t).sum(0).double()
    fn = (~p & t).sum(0).double()
    return float(_f1(tp, fp, fn).mean())


def mae(preds: Tensor, targets: Tensor) -> float:
    """Mean absolute error between ``preds`` (N,) and ``targets`` (N,)."""
    preds, targets = _check_pair(preds, targets, "mae")
    return float((preds.double() - targets.double()).abs().mean())


def pearson_r(preds: Tensor, targets: Tensor) -> float:
    """Pearson correlation of ``preds`` (N,) and ``targets`` (N,).

    Returns 0.0 when either side is constant (the correlation is undefined; treated as no
    linear relation so that model selection never sees NaN).
    """
    preds, targets = _check_pair(preds, targets, "pearson_r")
    x = preds.double() - preds.double().mean()
    y = targets.double() - targets.double().mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if denom == 0.0:
        return 0.0
    return float((x * y).sum()) / denom


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks of ``x`` (N,), ties sharing the mean of their ranks."""
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    n = x.numel()
    # Start of each run of equal values in sorted order.
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = sorted_x[1:] != sorted_x[:-1]
    run_id = torch.cumsum(new_run.long(), 0) - 1  # (N,)
    positions = torch.arange(1, n + 1, dtype=torch.float64)
    run_sum = torch.zeros(int(run_id[-1]) + 1, dtype=torch.float64).index_add_(0, run_id, positions)
    run_len = torch.bincount(run_id).double()
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = (run_sum / run_len)[run_id]
    return ranks


def auroc(scores: Tensor, targets: Tensor) -> float:
    """Area under the ROC curve for binary ``targets`` (N,) in {0, 1} and ``scores`` (N,).

    Computed from ranks (Mann-Whitney U) so tied scores count one half.

    Raises:
        ValueError: when ``targets`` holds only one class (the AUROC is undefined).
    """
    scores, targets = _check_pair(scores, targets, "auroc")
    targets = targets.long()
    bad = torch.unique(targets[(targets != 0) & (targets != 1)])
    if bad.numel():
        raise ValueError(f"auroc: targets must be 0 or 1, got values {bad.tolist()[:5]}.")
    n_pos = int(targets.sum())
    n_neg = targets.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"auroc: targets hold only one class ({n_pos} positive, {n_neg} negative); "
            "the AUROC needs both."
        )
    ranks = _average_ranks(scores.double())
    u = float(ranks[targets == 1].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def _multilabel_counts(preds: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    p = preds.bool()
    t = targets.bool()
    tp = (p & t).sum(0).double()
    fp = (p & ~t).sum(0).double()
    fn = (~p & t).sum(0).double()
    return tp, fp, fn


def multilabel_f1(preds: Tensor, targets: Tensor) -> dict[str, float]:
    """``micro_f1`` and ``macro_f1`` of multi-hot ``preds`` (N, K) against ``targets`` (N, K)."""
    preds = torch.as_tensor(preds).detach().cpu()
    targets = torch.as_tensor(targets).detach().cpu()
    if preds.shape != targets.shape or preds.dim() != 2:
        raise ValueError(
            f"multilabel_f1: preds and targets must both be (N, K); got {tuple(preds.shape)} "
            f"and {tuple(targets.shape)}."
        )
    tp, fp, fn = _multilabel_counts(preds, targets)
    micro = _f1(tp.sum(), fp.sum(), fn.sum())
    return {"micro_f1": float(micro), "macro_f1": float(_f1(tp, fp, fn).mean())}


def one_class_warning(
    outputs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None
) -> str:
    """A warning when a classifier predicts one class for every example although the
    targets hold several (a model that has not started learning); ``""`` otherwise.

    Args:
        outputs: (N, C) logits or (N,) predicted ids; targets: (N,) class ids.
    """
    outputs = torch.as_tensor(outputs).detach().cpu()
    preds = outputs.argmax(-1) if outputs.dim() == 2 else outputs.long()
    targets = torch.as_tensor(targets).detach().cpu().long().reshape(-1)
    if preds.numel() < 2 or torch.unique(targets).numel() < 2 or torch.unique(preds).numel() > 1:
        return ""
    k = int(preds[0])
    name = class_names[k] if class_names and k < len(class_names) else str(k)
    share = float((targets == k).double().mean())
    return (
        f"The model predicts class {name!r} for all {preds.numel()} examples (it is "
        f"{share:.0%} of them): it has not learned to tell the classes apart yet. Train "
        "longer or with another learning rate, check that the inputs vary between "
        "examples (normalised, decoded), or balance the classes."
    )


def compute_metrics(task: str, outputs: Tensor, targets: Tensor) -> dict[str, float]:
    """The metrics of ``task`` from raw model ``outputs`` and ``targets``.

    Args:
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``.
        outputs: classification: (N, C) logits or (N,) predicted ids (no ``auroc`` then);
            regression: (N,) or (N, 1) predictions; multilabel: (N, K) logits.
        targets: (N,) class ids, (N,) values, or (N, K) multi-hot.

    Returns:
        metric name -> value, names lowercase.  ``auroc`` is left out when the targets hold
        a single class.
    """
    outputs = torch.as_tensor(outputs).detach().cpu().float()
    targets = torch.as_tensor(targets).detach().cpu()
    if task == "classification":
        if outputs.dim() == 2:
            preds = outputs.argmax(-1)
        elif outputs.dim() == 1:
            preds = outputs.long()
        else:
            raise ValueError(
                f"compute_metrics: classification outputs must be (N, C) logits or (N,) ids; "
                f"got shape {tuple(outputs.shape)}."
            )
        out = {
            "accuracy": accuracy(preds, targets),
            "macro_f1": macro_f1(preds, targets),
            "weighted_f1": weighted_f1(preds, targets),
        }
        if outputs.dim() == 2 and outputs.shape[1] == 2:
            t = targets.long()
            if bool((t == 0).any()) and bool((t == 1).any()):
                pos = torch.softmax(outputs, -1)[:, 1]
                out["auroc"] = auroc(pos, t)
        return out
    if task == "regression":
        if outputs.dim() == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.dim() != 1:
            raise ValueError(
                f"compute_metrics: regression outputs must be (N,) or (N, 1); got shape "
                f"{tuple(outputs.shape)}."
            )
        return {"mae": mae(outputs, targets), "pearson_r": pearson_r(outputs, targets)}
    if task == "multilabel":
        return multilabel_f1(outputs > 0, targets > 0.5)
    raise unknown_name_error("task", task, list(TASKS))


__all__ = [
    "HIGHER_IS_BETTER",
    "accuracy",
    "auroc",
    "compute_metrics",
    "macro_f1",
    "mae",
    "multilabel_f1",
    "one_class_warning",
    "pearson_r",
    "task_metrics",
    "weighted_f1",
]
