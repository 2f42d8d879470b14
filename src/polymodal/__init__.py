"""polymodal: multimodal machine learning on PyTorch.

The names most work needs, importable from the package itself::

    from polymodal import load_dataset, ManifestDataset, load_config, train, build_model

    ds = load_dataset("har_phone_watch", split="train")
    result = train(load_config("configs/har_phone_watch.yaml", ["optim.epochs=5"]))
    trained = load_trained(result.run_dir)

They are loaded on first use, so ``import polymodal`` stays cheap.  Where each lives:

================== ==========================================================
module             what
================== ==========================================================
``data``           modalities, samples, batches, decoding, manifests, data sets
``encoders``       one encoder per modality kind (``polymodal list encoders``)
``fusion``         feature-level fusions (``polymodal list fusions``)
``models``         assembled models, decision-level fusions, ``build_model``
``joint``          joint embedding spaces: model, features, pairs, training, embeddings
``training``       the one loop, run configs, training tasks
``inference``      predict, evaluate, rebuild a trained model (no training imports)
``retrieval``      indexes, search, retrieval metrics, zero-shot labels
``config``         the one config mechanism (dataclasses <-> YAML, checked)
================== ==========================================================
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_FACADE: dict[str, str] = {
    # data
    "Batch": "polymodal.data.sample",
    "ModalityBatch": "polymodal.data.sample",
    "Sample": "polymodal.data.sample",
    "ModalityKind": "polymodal.data.modality",
    "ModalitySpec": "polymodal.data.modality",
    "Schema": "polymodal.data.modality",
    "TargetSpec": "polymodal.data.modality",
    "MultimodalDataset": "polymodal.data.dataset",
    "ManifestDataset": "polymodal.data.manifest",
    "load_dataset": "polymodal.data.datasets",
    "load_source": "polymodal.data.sources",
    # components and models
    "ENCODERS": "polymodal.encoders.base",
    "build_encoder": "polymodal.encoders.base",
    "FUSIONS": "polymodal.fusion.base",
    "build_fusion": "polymodal.fusion.base",
    "ModelConfig": "polymodal.models.config",
    "MultimodalModel": "polymodal.models.multimodal",
    "build_model": "polymodal.models.build",
    # training and inference
    "load_config": "polymodal.training.config",
    "TrainConfig": "polymodal.training.config",
    "Trainer": "polymodal.training.loop",
    "TrainResult": "polymodal.training.loop",
    "train": "polymodal.training",
    "load_trained": "polymodal.inference",
    "predict": "polymodal.inference",
    "evaluate": "polymodal.inference",
    # joint embeddings and search
    "JointConfig": "polymodal.joint.model",
    "JointEmbeddingModel": "polymodal.joint.model",
    "load_joint_checkpoint": "polymodal.joint.checkpoint",
    "embed_dataset": "polymodal.joint.embed",
    "ExactIndex": "polymodal.retrieval.index",
    "FaissIndex": "polymodal.retrieval.index",
    "load_index": "polymodal.retrieval.index",
}

if TYPE_CHECKING:
    from polymodal.data.dataset import MultimodalDataset
    from polymodal.data.datasets import load_dataset
    from polymodal.data.manifest import ManifestDataset
    from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
    from polymodal.data.sample import Batch, ModalityBatch, Sample
    from polymodal.data.sources import load_source
    from polymodal.encoders.base import ENCODERS, build_encoder
    from polymodal.fusion.base import FUSIONS, build_fusion
    from polymodal.inference import evaluate, load_trained, predict
    from polymodal.joint.checkpoint import load_joint_checkpoint
    from polymodal.joint.embed import embed_dataset
    from polymodal.joint.model import JointConfig, JointEmbeddingModel
    from polymodal.models.build import build_model
    from polymodal.models.config import ModelConfig
    from polymodal.models.multimodal import MultimodalModel
    from polymodal.retrieval.index import ExactIndex, FaissIndex, load_index
    from polymodal.training import train
    from polymodal.training.config import TrainConfig, load_config
    from polymodal.training.loop import Trainer, TrainResult


def __getattr__(name: str) -> Any:
    module = _FACADE.get(name)
    if module is None:
        raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_FACADE])


__all__ = [
    "ENCODERS",
    "FUSIONS",
    "Batch",
    "ExactIndex",
    "FaissIndex",
    "JointConfig",
    "JointEmbeddingModel",
    "ManifestDataset",
    "ModalityBatch",
    "ModalityKind",
    "ModalitySpec",
    "ModelConfig",
    "MultimodalDataset",
    "MultimodalModel",
    "Sample",
    "Schema",
    "TargetSpec",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "__version__",
    "build_encoder",
    "build_fusion",
    "build_model",
    "embed_dataset",
    "evaluate",
    "load_config",
    "load_dataset",
    "load_index",
    "load_joint_checkpoint",
    "load_source",
    "load_trained",
    "predict",
    "train",
]
