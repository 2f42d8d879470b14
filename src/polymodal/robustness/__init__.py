"""Robustness: perturbations of one modality of a batch, and the curves they trace.

* :mod:`~polymodal.robustness.perturb`: the registered perturbations (``PERTURBATIONS``),
  pure functions ``(ModalityBatch, severity, generator) -> ModalityBatch``.
* :mod:`~polymodal.robustness.curves`: metrics of trained runs against severity, and
  MultiBench's relative and effective robustness.
* :mod:`~polymodal.robustness.plot`: the figure of those curves.
"""

from polymodal.robustness.curves import (
    DEFAULT_LEVELS,
    RobustnessRecord,
    effective_robustness,
    minmax_normalize,
    parse_levels,
    relative_robustness,
    robustness_curves,
    robustness_summary,
)
from polymodal.robustness.perturb import (
    PERTURBATIONS,
    drop_modalities,
    perturb,
    perturb_batch,
    perturbations_for,
)
from polymodal.robustness.plot import plot_curves

__all__ = [
    "DEFAULT_LEVELS",
    "PERTURBATIONS",
    "RobustnessRecord",
    "drop_modalities",
    "effective_robustness",
    "minmax_normalize",
    "parse_levels",
    "perturb",
    "perturb_batch",
    "perturbations_for",
    "plot_curves",
    "relative_robustness",
    "robustness_curves",
    "robustness_summary",
]
