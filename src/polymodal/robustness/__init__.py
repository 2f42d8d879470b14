"""Robustness and attribution: perturbations, the curves they trace, each modality's share.

* :mod:`~polymodal.robustness.perturb`: the registered perturbations (``PERTURBATIONS``),
  pure functions ``(ModalityBatch, severity, generator) -> ModalityBatch``.
* :mod:`~polymodal.robustness.curves`: metrics of trained runs against severity, and
  MultiBench's relative and effective robustness.
* :mod:`~polymodal.robustness.plot`: the figure of those curves.
* :mod:`~polymodal.robustness.shapley`: exact Shapley values over modalities.
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
from polymodal.robustness.shapley import (
    MAX_MODALITIES,
    TARGETS,
    ShapleyReport,
    ShapleyResult,
    explain_dataset,
    shapley_values,
)

__all__ = [
    "DEFAULT_LEVELS",
    "MAX_MODALITIES",
    "PERTURBATIONS",
    "TARGETS",
    "RobustnessRecord",
    "ShapleyReport",
    "ShapleyResult",
    "drop_modalities",
    "effective_robustness",
    "explain_dataset",
    "minmax_normalize",
    "parse_levels",
    "perturb",
    "perturb_batch",
    "perturbations_for",
    "plot_curves",
    "relative_robustness",
    "robustness_curves",
    "robustness_summary",
    "shapley_values",
]
