"""Training objectives: functional form + ``nn.Module`` form of each.

Contrastive objectives for joint embeddings (:func:`clip_loss` / :class:`ClipLoss`,
:func:`siglip_loss` / :class:`SigLipLoss`) take their distributed context (rank, world
size) as constructor arguments, so they run and are tested on one CPU process.
"""

from polymodal.losses.contrastive import (
    CLIP_INIT_LOGIT_SCALE,
    MAX_LOGIT_SCALE,
    SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE,
    ClipLoss,
    SigLipLoss,
    clip_loss,
    siglip_loss,
)
from polymodal.losses.distributed import DistributedContext, gather_features

__all__ = [
    "CLIP_INIT_LOGIT_SCALE",
    "MAX_LOGIT_SCALE",
    "SIGLIP_INIT_LOGIT_BIAS",
    "SIGLIP_INIT_LOGIT_SCALE",
    "ClipLoss",
    "DistributedContext",
    "SigLipLoss",
    "clip_loss",
    "gather_features",
    "siglip_loss",
]
