"""Joint embedding spaces, in one place: the model, its data, its training, its outputs.

=================== =================================================================
file                holds
=================== =================================================================
``model.py``        :class:`JointConfig`, :class:`JointEmbeddingModel` (an encoder and a
                    projection per modality into one L2-normalised space)
``features.py``     the on-disk cache of frozen encoders' pooled features
``pairs.py``        :class:`PairSetConfig`, :class:`PairedFeatures`, :func:`pair_features`,
                    :func:`evaluate_pairs` (retrieval metrics both ways)
``checkpoint.py``   joint checkpoints (config + weights, frozen encoders by checksum)
``embed.py``        embedding a data set and the embeddings folder format
``train.py``        ``task: contrastive``: :class:`JointTrainConfig` and the training
                    strategy on the one loop (imports :mod:`polymodal.training`)
=================== =================================================================

Searching embeddings (:mod:`polymodal.retrieval`, ``polymodal embed``/``index``/``search``)
uses everything here but ``train.py``, so inference never imports training.
"""

from polymodal.joint.checkpoint import load_joint_checkpoint, save_joint_checkpoint
from polymodal.joint.embed import embed_dataset, read_embedded, read_embeddings, write_embeddings
from polymodal.joint.features import FeatureSet, cached_features, embed_pooled
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.joint.pairs import PairedFeatures, PairSetConfig, evaluate_pairs, pair_features

__all__ = [
    "FeatureSet",
    "JointConfig",
    "JointEmbeddingModel",
    "JointModalityConfig",
    "PairSetConfig",
    "PairedFeatures",
    "cached_features",
    "embed_dataset",
    "embed_pooled",
    "evaluate_pairs",
    "load_joint_checkpoint",
    "pair_features",
    "read_embedded",
    "read_embeddings",
    "save_joint_checkpoint",
    "write_embeddings",
]
