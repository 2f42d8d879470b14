"""Data: modality specs, samples and batches, decoding, alignment, manifests, data sets.

=================== =================================================================
module              holds
=================== =================================================================
``modality.py``     :class:`ModalityKind`, :class:`ModalitySpec`, :class:`TargetSpec`,
                    :class:`Schema` (configs: they round-trip through YAML/JSON)
``sample.py``       :class:`Sample` (one example) and :class:`Batch` / :class:`ModalityBatch`
                    (values, presence masks, lengths, step masks)
``collate.py``      samples -> a batch, padding and zero-filling what is missing
``dataset.py``      :class:`MultimodalDataset` (the interface every data set implements),
                    text rows (the captions-to-rows convention)
``decode/``         one decoder per kind (image, audio + resampling, video, time series,
                    text, features), dispatch by file type, errors naming file and fix
``manifest/``       a user's CSV/JSONL: reading, schema files, kind inference, decoding
                    cells, :class:`ManifestDataset`, ``check_manifest``
``align/``          streams on their own clocks -> one timeline; windows; word intervals
``context.py``      the video-level view of per-utterance data sets (context models)
``datasets/``       the built-in data sets (``load_dataset``), each with ``modalities=``
``webshards/``      a split as WebDataset tar shards of decoded arrays: writing, reading by
                    index (:class:`ShardDataset`), streaming per rank and worker
``sources.py``      one argument for "which examples": a manifest, a shard folder or a name
``splits.py``       validation carved by group (speaker, subject, video)
``paths.py``, ``download.py``  where data lives; fetching it with checksums
=================== =================================================================
"""

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
