"""The base of the modality-imbalance methods (:mod:`polymodal.training.balance`).

:class:`Balancer` is the interface :class:`~polymodal.training.supervised.SupervisedStrategy`
calls; the helpers here are shared by the methods (masked means, an eval-mode context and a
tap on the encoders' outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.sample import Batch
from polymodal.outputs import EncoderOutput
from polymodal.training.config import BalanceConfig

#: A function from a model output and its batch to the fused training loss.
FusedLoss = Callable[[Any, Batch], Tensor]
#: A function that yields the validation batches (on the training device).
BatchSource = Callable[[], Iterable[Batch]]


# --------------------------------------------------------------------------- shared helpers


def masked_mean(per: Tensor, keep: Tensor) -> Tensor:
    """Mean of (B,) ``per`` over the rows where ``keep``; 0 (with gradient) when none."""
    w = keep.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1.0)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode without gradients (its mode restored afterwards)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


# --------------------------------------------------------------------------- the base class


class Balancer:
    """Base of the imbalance methods (``none`` is no balancer at all).

    Args:
        cfg: the run's :class:`BalanceConfig`.
        model: a :class:`~polymodal.models.MultimodalModel` (``encoders``, ``fusion``).
        task: ``classification``, ``regression`` or ``multilabel``.
        regression_loss: ``mse`` or ``l1``.
        seed: seeds the method's own random numbers and parameters.
    """

    #: Whether the method needs a classification task (softmax of the true class).
    classification_only = False

    @property
    def steps_per_batch(self) -> int:
        """Optimisation steps the method takes on each training batch (the strategy
        yields every batch this many times in a row)."""
        return 1

    def __init__(
        self, cfg: BalanceConfig, model: nn.Module, task: str, regression_loss: str, seed: int
    ) -> None:
        encoders = getattr(model, "encoders", None)
        if not isinstance(encoders, nn.ModuleDict) or len(encoders) < 2:
            raise ValueError(
                f"optim.balance.method={cfg.method!r} balances the encoders of a model with "
                "at least two modalities (a MultimodalModel); this model has "
                f"{'no encoders' if encoders is None else list(encoders)}. Use "
                "optim.balance.method=none."
            )
        if self.classification_only and task != "classification":
            raise ValueError(
                f"optim.balance.method={cfg.method!r} needs a classification task (it reads "
                f"the softmax probabilities of the classes); this run's task is {task!r}. "
                "Use optim.balance.method=gblend or none."
            )
        self.cfg, self.model, self.task, self.regression_loss = cfg, model, task, regression_loss
        self.names: list[str] = sorted(encoders)
        self.encoders: nn.ModuleDict = encoders
        self.seed = seed
        self.epoch = 0  # set by the strategy at the start of each epoch (0-based)

    def module(self) -> nn.Module | None:
        """Parameters the method adds (trained with the model, kept in ``state``)."""
        return None

    def loss(self, batch: Batch, fused_loss: FusedLoss) -> Tensor:
        """The training loss of one batch (already on the device)."""
        return fused_loss(self.model(batch), batch)

    def before_step(self) -> None:
        """Rewrite the gradients after ``backward``, before clipping and the step."""

    def end_epoch(self, epoch: int, val_batches: BatchSource) -> dict[str, float]:
        """After 1-based ``epoch``'s validation; returns entries for the history row."""
        return {}

    def eval_model(self) -> nn.Module:
        """The module evaluated on the validation and test splits."""
        return self.model

    def state(self) -> dict[str, Tensor]:
        """Tensors a resumed run needs (saved with every checkpoint)."""
        return {}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        """Restore :meth:`state`."""

    def generators(self) -> dict[str, torch.Generator]:
        """The method's own random generators (their states are checkpointed)."""
        return {}

    def to(self, device: torch.device) -> None:
        """Move the method's parameters and state to ``device``."""


# --------------------------------------------------------------------------- encoder tap


class EncoderTap:
    """Forward hooks on the encoders that keep each one's output, pooled output and
    presence (the presence after modality dropout: what the encoder was given)."""

    def __init__(self, encoders: nn.ModuleDict) -> None:
        self.encoders = encoders
        self.outputs: dict[str, EncoderOutput] = {}
        self.pooled: dict[str, Tensor] = {}
        self.present: dict[str, Tensor] = {}

    def __enter__(self) -> EncoderTap:
        def hook(name: str) -> Any:
            def keep(module: nn.Module, args: tuple[Any, ...], out: EncoderOutput) -> None:
                self.outputs[name] = out
                self.pooled[name] = out.pooled  # (B, D_m)
                self.present[name] = args[0].present.to(torch.bool)  # (B,)

            return keep

        self.handles = [enc.register_forward_hook(hook(n)) for n, enc in self.encoders.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


__all__ = ["Balancer", "BatchSource", "EncoderTap", "FusedLoss", "evaluating", "masked_mean"]
