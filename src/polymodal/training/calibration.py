"""Per-modality temperatures of a late fusion, fitted on the validation split.

A late fusion (:class:`~polymodal.models.decision.LateFusion`) adds its modalities' logits
(or probabilities) as if each were equally trustworthy.  A modality that is confidently
wrong on examples unlike its training set (a voice model on a new speaker) then outvotes
the others.  With ``model.fusion.params.calibrate: true`` the trainer fits one temperature
per modality after each validation pass (:func:`fit_temperatures`): the temperatures that
minimise the cross-entropy of the *fused* prediction on the validation split (temperature
scaling, Guo et al. 2017, one temperature per classifier before they are combined).  The
validation split is carved from train the way the test is held out (by speaker, subject or
video), so the temperatures say how far each modality's confidence carries to new groups.

A model trained with ``optim.balance: {method: mla, mla_fusion: calibrated}`` predicts with
each modality alone through MLA's test-time fusion
(:class:`~polymodal.models.entropy.EntropyFusion`); its temperatures are fitted the same way,
the fused prediction being the mean of the scaled logits.  That fusion wraps the model, so
its temperatures are not among the weights: the balancer's state and every checkpoint's
``state.json`` (``modality_temperatures``) keep them, and ``load_trained`` restores them.

The weights the model trained are unchanged; the temperatures act in eval mode only and are
saved with the weights, so the best checkpoint, ``polymodal evaluate`` and served models use
the temperatures fitted with them.  The validation scores the trainer logs, selects the best
epoch on and stops early on are the calibrated model's: M numbers fitted on the same split, so
slightly optimistic (the test split is never used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.dataset import MultimodalDataset
from polymodal.device import autocast
from polymodal.inference import calibrate_groups, data_loader
from polymodal.models.decision import LateFusion
from polymodal.models.entropy import EntropyFusion

#: What holds per-modality temperatures: a late fusion with ``calibrate=True``, or MLA's
#: test-time fusion with ``combine="calibrated"`` (``optim.balance.mla_fusion``).
CalibratedFusion = LateFusion | EntropyFusion

#: Temperatures are kept within [1 / MAX_TEMPERATURE, MAX_TEMPERATURE].
MAX_TEMPERATURE = 100.0


@dataclass(frozen=True)
class Temperatures:
    """What :func:`fit_temperatures` fitted.

    Attributes:
        temperatures: modality name -> its temperature (> 1: its logits are softened).
        loss_before: the fused cross-entropy on the validation split at temperature 1.
        loss_after: the same with the fitted temperatures.
    """

    temperatures: dict[str, float]
    loss_before: float
    loss_after: float


def calibrated_fusion(model: nn.Module) -> CalibratedFusion | None:
    """The fusion in ``model`` that fits temperatures, if any: a late fusion with
    ``calibrate=True``, or ``model`` itself when it is MLA's calibrated test-time fusion."""
    for module in model.modules():
        if isinstance(module, (LateFusion, EntropyFusion)) and module.calibrate:
            return module
    return None


@torch.no_grad()
def modality_logits(
    model: nn.Module,
    fusion: CalibratedFusion,
    dataset: MultimodalDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    precision: str = "fp32",
    num_workers: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Each modality's own logits at temperature 1 (eval mode), over ``dataset`` in order.

    Returns:
        ``(logits, flags, targets)``: (N, M, K) float32 per-modality logits (zero where the
        modality is absent), (N, M) presence (1.0 / 0.0) and (N,) class targets, modalities
        in ``fusion.names`` order.
    """
    device = torch.device(device)
    model.to(device)
    calibrate_groups(model, dataset, batch_size, device)
    kept = fusion.log_inv_temperature.clone()
    fusion.log_inv_temperature.zero_()
    was_training = model.training
    model.eval()
    logits: list[Tensor] = []
    flags: list[Tensor] = []
    targets: list[Tensor] = []
    try:
        for batch in data_loader(dataset, batch_size, num_workers=num_workers):
            if batch.target is None:
                raise ValueError(
                    f"Data set {dataset.name!r} (split {dataset.split!r}) has no labels; "
                    "fitting temperatures needs a labelled validation split."
                )
            batch = batch.to(device)
            with autocast(device, precision):
                out = model(batch)
            per = getattr(out, "modality_logits", None)
            if not per:
                raise TypeError(
                    f"{type(model).__name__} did not return per-modality logits "
                    "(modality_logits); temperatures need a model around a late fusion "
                    "(or MLA's test-time fusion)."
                )
            logits.append(torch.stack([per[n].float().cpu() for n in fusion.names], dim=1))
            present = [batch[n].present.float().cpu() for n in fusion.names]
            flags.append(torch.stack(present, dim=1))  # (B, M)
            targets.append(batch.target.long().cpu())
    finally:
        model.train(was_training)
        fusion.log_inv_temperature.copy_(kept)
    return torch.cat(logits), torch.cat(flags), torch.cat(targets)


def fit_inverse_temperatures(
    fusion: CalibratedFusion, logits: Tensor, flags: Tensor, targets: Tensor, steps: int = 100
) -> tuple[Tensor, float, float]:
    """``log(1 / temperature)`` per modality that minimises the fused cross-entropy.

    Full-batch L-BFGS from temperature 1 (deterministic), then clamped to
    [1 / MAX_TEMPERATURE, MAX_TEMPERATURE].

    Shape:
        - logits: (N, M, K); flags: (N, M); targets: (N,) long
        - return[0]: (M,)

    Returns:
        ``(log_inv_temperature, loss_before, loss_after)``.
    """
    log_inv = torch.zeros(logits.shape[1], requires_grad=True)
    fixed = {p: p.requires_grad for p in fusion.parameters()}

    def loss_at(x: Tensor) -> Tensor:
        fused, _ = fusion.combine_logits(logits * x.exp()[None, :, None], flags)
        return F.cross_entropy(fused, targets)

    try:
        for p in fixed:
            p.requires_grad_(False)  # the fusion's own weights (learned scores) stay put
        with torch.no_grad():
            before = float(loss_at(log_inv))
        opt = torch.optim.LBFGS([log_inv], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = loss_at(log_inv)
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        with torch.enable_grad():
            opt.step(closure)  # type: ignore[no-untyped-call]
        bound = math.log(MAX_TEMPERATURE)
        fitted = log_inv.detach().nan_to_num(0.0).clamp(-bound, bound)
        with torch.no_grad():
            after = float(loss_at(fitted))
    finally:
        for p, flag in fixed.items():
            p.requires_grad_(flag)
    if not after <= before:  # never worse than temperature 1 on the data it was fitted on
        return torch.zeros_like(fitted), before, before
    return fitted, before, after


def fit_temperatures(
    model: nn.Module,
    dataset: MultimodalDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    precision: str = "fp32",
    num_workers: int = 0,
) -> Temperatures | None:
    """Fit the per-modality temperatures of ``model``'s calibrated fusion on ``dataset`` (the
    validation split) and store them in the fusion; ``None`` when the model has none."""
    fusion = calibrated_fusion(model)
    if fusion is None:
        return None
    logits, flags, targets = modality_logits(
        model, fusion, dataset, device, batch_size, precision, num_workers
    )
    log_inv, before, after = fit_inverse_temperatures(fusion, logits, flags, targets)
    with torch.no_grad():
        fusion.log_inv_temperature.copy_(log_inv.to(fusion.log_inv_temperature.device))
    return Temperatures(_stored(fusion), before, after)


def fitted_temperatures(model: nn.Module) -> dict[str, float] | None:
    """The temperatures stored in ``model``'s calibrated fusion (``None`` if none)."""
    fusion = calibrated_fusion(model)
    return None if fusion is None else _stored(fusion)


def _stored(fusion: CalibratedFusion) -> dict[str, float]:
    """Modality name -> the temperature ``fusion`` holds."""
    values = fusion.log_inv_temperature.tolist()
    return {n: float(math.exp(-v)) for n, v in zip(fusion.names, values, strict=True)}


__all__ = [
    "MAX_TEMPERATURE",
    "CalibratedFusion",
    "Temperatures",
    "calibrated_fusion",
    "fit_inverse_temperatures",
    "fit_temperatures",
    "fitted_temperatures",
    "modality_logits",
]
