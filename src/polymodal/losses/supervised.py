"""Supervised objectives: the loss of a prediction task, and its per-utterance form.

:func:`task_loss` is the loss every supervised run optimises (cross-entropy, MSE/L1 or
BCE-with-logits by the data's task); :func:`sequence_loss` is cross-entropy over padded
(V, U) label sequences that ignores padding (context models classifying each utterance of
a video).  Both compute in fp32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from polymodal.data.context import IGNORE_INDEX


def task_loss(
    task: str,
    logits: Tensor,
    target: Tensor,
    regression_loss: str = "mse",
    reduction: str = "mean",
) -> Tensor:
    """The loss of ``task``: cross-entropy, MSE/L1, or BCE-with-logits (computed in fp32).

    Shape:
        logits: (B, C) classification, (B, 1) or (B,) regression, (B, K) multilabel.
        target: (B,) long, (B,) float, (B, K) float.
        returns: a scalar, or (B,) with ``reduction="none"`` (multilabel: mean over K).
    """
    logits = logits.float()
    if task == "classification":
        return F.cross_entropy(logits, target.long(), reduction=reduction)
    if task == "regression":
        pred = logits.reshape(logits.shape[0], -1)
        if pred.shape[1] != 1:
            raise ValueError(
                f"A regression model must output (B, 1) or (B,), got {tuple(logits.shape)}."
            )
        fn = F.l1_loss if regression_loss == "l1" else F.mse_loss
        return fn(pred[:, 0], target.float().reshape(-1), reduction=reduction)
    if task == "multilabel":
        loss = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        per_example = loss.mean(-1)
        return per_example if reduction == "none" else per_example.mean()
    raise ValueError(f"Unknown task {task!r}; expected classification, regression or multilabel.")


def sequence_loss(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy over the real steps of padded sequences; padding (target
    :data:`IGNORE_INDEX`) adds nothing, and the mean is over real steps only.

    Shape:
        - logits: (V, U, K)
        - target: (V, U) long
        - returns: a scalar (``"mean"``, ``"sum"``)
    """
    if logits.shape[:2] != target.shape:
        raise ValueError(
            f"sequence_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} "
            "must agree on (V, U)."
        )
    return F.cross_entropy(
        logits.float().flatten(0, 1),
        target.long().flatten(),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )


__all__ = ["IGNORE_INDEX", "sequence_loss", "task_loss"]
