"""Validation with a modality missing: keep the epoch that also works when one is.

A model trained with modality dropout to survive a failed sensor is usually still *chosen*
on validation data where every modality is present, so the epoch kept can be one whose
single-modality paths are weak.  ``monitor_without: [m, ...]`` (supervised and context runs)
evaluates each split again with each listed modality absent from every example (through the
presence mask, as ``polymodal evaluate --drop m`` does) and adds to its metrics:

* ``<metric>_without_<m>`` for every metric of the split, and
* ``<monitor>_mean_over_missing``: the mean of the monitor with every modality present and
  with each listed one absent (``1 + len(monitor_without)`` values, equally weighted).

That mean selects the best epoch and drives early stopping
(:attr:`~polymodal.training.config.RunConfig.selection_metric`); ``results.json`` reports the
test split's ``_without_`` metrics of the kept weights too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from polymodal.data.sample import Batch
from polymodal.errors import did_you_mean
from polymodal.robustness.perturb import drop_modalities
from polymodal.training.config import mean_over_missing

Transform = Callable[[Batch], Batch]


def check_monitor_without(without: Sequence[str], modalities: Sequence[str]) -> None:
    """``monitor_without`` names distinct modalities of the model, and leaves one to read."""
    for name in without:
        if name not in modalities:
            raise ValueError(
                f"monitor_without names {name!r}, which is not a modality of this model; "
                f"choose from {list(modalities)}.{did_you_mean(name, modalities)}"
            )
    if len(set(without)) != len(without):
        raise ValueError(f"monitor_without lists a modality twice: {list(without)}.")
    if without and len(modalities) < 2:
        raise ValueError(
            f"monitor_without={list(without)} needs a model of at least two modalities (this "
            f"one reads only {list(modalities)}, so nothing is left without it); remove "
            "monitor_without."
        )


def with_missing(
    evaluate: Callable[[Transform | None], dict[str, float]],
    monitor: str,
    without: Sequence[str],
) -> dict[str, float]:
    """``evaluate(None)``'s metrics, plus, for each modality ``m`` of ``without``, those of
    ``evaluate(drop m)`` as ``<metric>_without_<m>`` and the monitor's mean over the
    ``1 + len(without)`` conditions as :func:`mean_over_missing` (nothing added when
    ``without`` is empty)."""
    metrics = dict(evaluate(None))
    if not without:
        return metrics
    values = [metrics.get(monitor)]
    for name in without:
        dropped = evaluate(partial(drop_modalities, modalities=[name]))
        metrics.update({f"{k}_without_{name}": v for k, v in dropped.items()})
        values.append(dropped.get(monitor))
    if all(v is not None for v in values):  # else the loop names the missing monitor
        metrics[mean_over_missing(monitor)] = sum(values) / len(values)  # type: ignore[arg-type]
    return metrics


__all__ = ["check_monitor_without", "with_missing"]
