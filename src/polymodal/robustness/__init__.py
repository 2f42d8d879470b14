"""Robustness and attribution of multimodal models: what each modality contributes."""

from polymodal.robustness.shapley import (
    MAX_MODALITIES,
    TARGETS,
    ShapleyReport,
    ShapleyResult,
    explain_dataset,
    shapley_values,
)

__all__ = [
    "MAX_MODALITIES",
    "TARGETS",
    "ShapleyReport",
    "ShapleyResult",
    "explain_dataset",
    "shapley_values",
]
