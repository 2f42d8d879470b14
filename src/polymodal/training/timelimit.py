"""``optim.time_limit``: stop a run cleanly once it has trained for so many seconds.

The loop asks :meth:`TimeLimit.reached` after every optimisation step.  Training seconds
are counted as :attr:`~polymodal.training.loop.LoopState.seconds` counts them (wall time
since the loop started, validation included, plus the seconds of earlier resumptions), so
a resumed run spends only what is left.  When the limit is reached:

* the epoch cut short is validated when no epoch has been yet (so there is a best
  checkpoint to keep); otherwise it is left mid-epoch, as a checkpoint taken every N steps
  leaves it, and the best epoch so far stays the best;
* the run finishes as any other: ``checkpoints/last``, the best weights evaluated on the
  test split once, ``results.json``.

``time_limit`` may change on resumption (a resume-free key): a run stopped by its limit and
resumed with a larger one (or none) continues where it stopped.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from polymodal.training.distributed import all_reduce_sum

if TYPE_CHECKING:
    from polymodal.training.loop import LoopState

logger = logging.getLogger("polymodal.training")

#: The clock the limit is measured with (the loop's); tests replace it.
clock = time.perf_counter


class TimeLimit:
    """The training-time budget of one :meth:`~polymodal.training.loop.Trainer.fit` call.

    Args:
        seconds: the limit (``None``: none; every method then leaves the run alone).
        state: the loop state the run starts from (a resumed run's: its ``seconds`` count).
        steps_per_epoch: optimisation steps in a full epoch.
    """

    def __init__(self, seconds: float | None, state: LoopState, steps_per_epoch: int) -> None:
        self.seconds = seconds
        self.before = state.seconds
        self.started = clock()
        self.steps_per_epoch = steps_per_epoch
        self.hit = False
        if state.time_limited and (seconds is None or state.seconds < seconds):
            state.finished = state.time_limited = False  # resumed with more time: go on
            logger.info("time limit now %s s: continuing after %.0f s", seconds, state.seconds)

    def reached(self, state: LoopState) -> bool:
        """Whether the run has used its time, checked at a step boundary (logs it once)."""
        if self.seconds is None:
            return False
        elapsed = self.before + clock() - self.started
        # under torchrun every rank stops at the same step: when any rank's clock says so
        (ranks_done,) = all_reduce_sum([float(elapsed >= self.seconds)])
        if ranks_done == 0:
            return False
        if not self.hit:
            logger.info(
                "time limit reached after %.0f s at epoch %d, step %d",
                elapsed,
                state.epoch + 1,
                state.global_step,
            )
        self.hit = True
        return True

    def validate(self, state: LoopState) -> bool:
        """Whether the loop validates the epoch just trained: always, except one the limit
        cut short after an earlier epoch was validated."""
        return not self.hit or not state.history or state.step_in_epoch >= self.steps_per_epoch

    def stop(self, state: LoopState) -> None:
        """After an epoch: a run whose limit was reached finishes (``time_limited`` marks
        that the limit, not the epochs or early stopping, ended it)."""
        if self.hit and not state.finished:
            state.finished = state.time_limited = True


__all__ = ["TimeLimit", "clock"]
