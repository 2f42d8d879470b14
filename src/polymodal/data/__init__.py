"""Data: modality specs, samples and batches, decoding, alignment, manifests, data sets."""

from polymodal.data.collate import Collator, collate
from polymodal.data.dataset import MultimodalDataset, SubsetDataset
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.paths import ENV_VAR, DatasetNotFoundError
from polymodal.data.sample import Batch, ModalityBatch, Sample
from polymodal.data.splits import group_split

__all__ = [
    "ENV_VAR",
    "Batch",
    "Collator",
    "DatasetNotFoundError",
    "ModalityBatch",
    "ModalityKind",
    "ModalitySpec",
    "MultimodalDataset",
    "Sample",
    "Schema",
    "SubsetDataset",
    "TargetSpec",
    "collate",
    "group_split",
]
