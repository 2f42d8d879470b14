"""Retrieval benchmark: Flickr8k image-text retrieval on cached frozen features; search speed.

Run ``python benchmarks/retrieval.py`` (``--skip-train`` / ``--skip-search`` for one part).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from polymodal.data.datasets._common import load_dataset
from polymodal.encoders import build_encoder
from polymodal.retrieval.features import FeatureSet, cached_features, tensor_batch, text_batch

IMAGE_ENCODER = ("efficientnet_lite0", {})
TEXT_ENCODER = ("minilm", {})
_ENCODERS: dict[str, torch.nn.Module] = {}


def _encoder(name: str, params: dict[str, object], spec: object) -> torch.nn.Module:
    if name not in _ENCODERS:
        _ENCODERS[name] = build_encoder(name, spec=spec, **params)
    return _ENCODERS[name]


def flickr_features(split: str, progress: bool = False) -> tuple[FeatureSet, FeatureSet]:
    """Cached pooled image features (one per image) and caption features (5 per image)."""
    ds = load_dataset("flickr8k", split=split)
    images = ds.images()  # type: ignore[attr-defined]
    captions = ds.captions()  # type: ignore[attr-defined]
    img_enc = _encoder(IMAGE_ENCODER[0], IMAGE_ENCODER[1], ds.schema["image"])
    txt_enc = _encoder(TEXT_ENCODER[0], TEXT_ENCODER[1], ds.schema["text"])

    def report(done: int, total: int) -> None:
        if progress and (done % 640 == 0 or done == total):
            print(f"  {split}: {done}/{total}", file=sys.stderr, flush=True)

    def image_batch(positions: object) -> object:
        return tensor_batch([ds[i].modalities["image"] for i in positions])  # type: ignore[misc]

    img = cached_features(
        img_enc,
        image_batch,  # type: ignore[arg-type]
        images,
        dataset="flickr8k",
        split=split,
        modality="image",
        encoder_name=IMAGE_ENCODER[0],
        encoder_params=IMAGE_ENCODER[1],
        progress=report,
    )
    texts = [c for caps in captions for c in caps]
    ids = [f"{name}#{k}" for name in images for k in range(len(captions[0]))]
    txt = cached_features(
        txt_enc,
        lambda positions: text_batch([texts[i] for i in positions]),
        ids,
        dataset="flickr8k",
        split=split,
        modality="text",
        encoder_name=TEXT_ENCODER[0],
        encoder_params=TEXT_ENCODER[1],
        batch_size=128,
        progress=report,
    )
    return img, txt


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
