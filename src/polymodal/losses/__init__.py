"""Training objectives: functional form + ``nn.Module`` form of each.

Supervised objectives (:func:`task_loss`, :func:`sequence_loss`) and contrastive objectives
for joint embeddings (:func:`clip_loss` / :class:`ClipLoss`,
:func:`siglip_loss` / :class:`SigLipLoss`, :func:`max_violation_loss` /
:class:`MaxViolationLoss`) take their distributed context (rank, world
size) as constructor arguments, so they run and are tested on one CPU process.
"""

from polymodal.losses.contrastive import (
    CLIP_INIT_LOGIT_SCALE,
    MAX_LOGIT_SCALE,
    SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE,
    ClipLoss,
    MaxViolationLoss,
    SigLipLoss,
    clip_loss,
    max_violation_loss,
    multi_positive_clip_loss,
    siglip_loss,
)
from polymodal.losses.distributed import DistributedContext, gather_features
from polymodal.losses.supervised import IGNORE_INDEX, sequence_loss, task_loss

__all__ = [
    "CLIP_INIT_LOGIT_SCALE",
    "IGNORE_INDEX",
    "MAX_LOGIT_SCALE",
    "SIGLIP_INIT_LOGIT_BIAS",
    "SIGLIP_INIT_LOGIT_SCALE",
    "ClipLoss",
    "DistributedContext",
    "MaxViolationLoss",
    "SigLipLoss",
    "clip_loss",
    "gather_features",
    "max_violation_loss",
    "multi_positive_clip_loss",
    "sequence_loss",
    "siglip_loss",
    "task_loss",
]
