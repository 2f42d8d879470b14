"""polymodal: multimodal machine learning on PyTorch."""

from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import Batch, ModalityBatch, Sample

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "ModalityBatch",
    "ModalityKind",
    "ModalitySpec",
    "Sample",
    "Schema",
    "TargetSpec",
    "__version__",
]
