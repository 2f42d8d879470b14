"""Image feature sequences for captioning: a frozen image encoder's spatial map, cached.

:func:`sequence_features` runs a frozen registered image encoder (``efficientnet_lite0``:
its last 7x7x1280 map at 224x224, as 49 steps) over a data set's images once and keeps
the (N, L, F) sequences in the split-level feature cache of
:func:`polymodal.joint.features.cached_features` (the same keys and checks; stored
flattened, (N, L * F), under modality ``image_seq``).  Training then reads them in
seconds instead of running the encoder every epoch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.config import Config
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import Encoder, build_encoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ImageEncoderConfig(Config):
    """The frozen image encoder whose feature sequence the decoder reads.

    Args:
        name: a registered image encoder (``polymodal list encoders``) with a spatial
            sequence output (``efficientnet_lite0``: 7 x 7 = 49 steps of 1280).
        params: its build parameters (``freeze`` is always true).
        image_size: images are resized to this square size.
    """

    name: str = "efficientnet_lite0"
    params: dict[str, Any] = field(default_factory=dict)
    image_size: int = 224


def build_image_encoder(cfg: ImageEncoderConfig) -> Encoder:
    """The frozen encoder of ``cfg``, in eval mode."""
    if cfg.params.get("freeze", True) is not True:
        raise ValueError(
            "encoder.params.freeze must be true for captioning: the decoder trains on cached "
            f"features of a frozen encoder; got freeze={cfg.params['freeze']!r}."
        )
    spec = ModalitySpec("image", ModalityKind.IMAGE, shape=(3, cfg.image_size, cfg.image_size))
    enc = build_encoder(cfg.name, spec, **{**cfg.params, "freeze": True})
    enc.requires_grad_(False)
    return enc.eval()


@torch.no_grad()
def encode_images(encoder: nn.Module, images: Tensor) -> Tensor:
    """The feature sequences of a batch of decoded images.

    Shape:
        images: (B, 3, H, W) ImageNet-normalised; output: (B, L, F)
    """
    batch = ModalityBatch(images, torch.ones(images.shape[0], dtype=torch.bool))
    return encoder(batch.to(images.device)).sequence  # type: ignore[no-any-return]


def sequence_features(
    encoder: Encoder,
    cfg: ImageEncoderConfig,
    dataset: Any,
    ids: Sequence[str],
    *,
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
) -> tuple[Tensor, bool]:
    """Feature sequences of ``dataset``'s first ``len(ids)`` examples, through the cache,
    and whether they were read from it (``False``: computed now).

    Args:
        encoder: the frozen encoder of ``cfg``.
        dataset: a data set whose examples hold an ``"image"`` modality.
        ids: the examples' ids (part of the cache key).
        name, split: the data set's name and split (for the key).
        root: the feature cache root (``None``: the default one).

    Shape:
        output: (N, L, F) float32 on the CPU
    """
    from polymodal.joint.features import SequenceRows, cached_features, tensor_batch

    def make_batch(positions: Sequence[int]) -> ModalityBatch:
        return tensor_batch([dataset[i].modalities["image"] for i in positions])

    probe = encode_images(encoder, dataset[0].modalities["image"][None])  # (1, L, F)
    length, dim = probe.shape[1:]
    fs = cached_features(
        SequenceRows(encoder),
        make_batch,
        ids,
        dataset=name,
        split=split,
        modality="image_seq",
        encoder_name=cfg.name,
        encoder_params={**cfg.params, "image_size": cfg.image_size},
        root=root,
        batch_size=batch_size,
        progress=None,
    )
    logger.info(
        "%s %s: %d feature sequences (%s, %.1fs)",
        name,
        split,
        len(ids),
        "cached" if fs.hit else "computed",
        fs.seconds,
    )
    return fs.features.view(len(ids), length, dim), fs.hit


__all__ = ["ImageEncoderConfig", "build_image_encoder", "encode_images", "sequence_features"]
