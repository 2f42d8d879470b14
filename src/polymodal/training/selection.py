"""Which epoch is best: the monitor first, the validation loss on a tie."""

from __future__ import annotations

import math

#: A tie of the monitor goes to the later epoch only when its validation loss is lower by at
#: least this fraction (numerical noise in the loss is not an improvement).
TIE_LOSS_MARGIN = 1e-4


def better(value: float | None, best: float | None, higher: bool) -> bool:
    """Whether ``value`` beats ``best`` (``None``: no best yet); NaN never does."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if higher else value < best


def improves(
    value: float | None,
    loss: float | None,
    best: float | None,
    best_loss: float | None,
    higher: bool,
) -> bool:
    """Whether an epoch with validation ``value`` of the monitor and validation ``loss``
    beats the best so far (``best``, ``best_loss``).

    A better monitor wins.  An equal one (a small validation set saturates accuracy, and
    every later epoch ties) wins when its loss is lower by more than ``TIE_LOSS_MARGIN``
    of the best's, so the earliest saturated, undertrained epoch is not the one kept.
    """
    if better(value, best, higher):
        return True
    if value is None or value != best or loss is None:
        return False
    return best_loss is None or better(loss, best_loss - TIE_LOSS_MARGIN * abs(best_loss), False)


__all__ = ["TIE_LOSS_MARGIN", "better", "improves"]
