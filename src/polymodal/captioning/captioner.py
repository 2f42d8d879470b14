"""A trained captioner: the frozen encoder, the decoder and its vocabulary, from a checkpoint.

A ``task: captioning`` checkpoint (the one format, :mod:`polymodal.checkpoint`) holds the
decoder's weights and, as text files, ``captioner.json`` (the encoder, decoder and
decoding settings) and ``caption_vocab.json`` (the kept WordPiece pieces).
:func:`load_captioner` needs nothing else, and imports nothing of the training code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.captioning.decoding import DecodeConfig, generate, keyframes, merge_repeats
from polymodal.captioning.features import (
    ImageEncoderConfig,
    build_image_encoder,
    encode_images,
)
from polymodal.captioning.model import CaptionDecoder, CaptionModelConfig
from polymodal.captioning.tokenizer import CaptionTokenizer
from polymodal.encoders.base import Encoder

CAPTIONER_FILE = "captioner.json"
VOCAB_FILE = "caption_vocab.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def captioner_files(
    encoder: ImageEncoderConfig,
    model: CaptionModelConfig,
    decode: DecodeConfig,
    feature_dim: int,
    tokenizer: CaptionTokenizer,
) -> dict[str, str]:
    """The text files a captioning checkpoint carries."""
    spec = {
        "encoder": encoder.to_dict(),
        "model": model.to_dict(),
        "decode": decode.to_dict(),
        "feature_dim": feature_dim,
    }
    return {CAPTIONER_FILE: json.dumps(spec, indent=1), VOCAB_FILE: tokenizer.to_json()}


@dataclass
class Captioner:
    """Everything needed to caption images.

    Attributes:
        encoder: the frozen image encoder (eval mode).
        decoder: the caption decoder (eval mode).
        tokenizer: the decoder's vocabulary.
        encoder_config: how images are encoded (``image_size``).
        decode: the default decoding settings (the run's).
    """

    encoder: Encoder
    decoder: CaptionDecoder
    tokenizer: CaptionTokenizer
    encoder_config: ImageEncoderConfig
    decode: DecodeConfig

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def caption_tensors(self, images: Tensor, decode: DecodeConfig | None = None) -> list[str]:
        """Captions of decoded images (B, 3, S, S), ImageNet-normalised."""
        cfg = self.decode if decode is None else decode
        out: list[str] = []
        for s in range(0, images.shape[0], cfg.batch_size):
            feats = encode_images(self.encoder, images[s : s + cfg.batch_size].to(self.device))
            out += generate(self.decoder, feats, self.tokenizer, cfg)
        return out

    def caption_images(
        self, paths: Sequence[str | os.PathLike[str]], decode: DecodeConfig | None = None
    ) -> list[str]:
        """One caption per image file."""
        from polymodal.data.decode import decode_image

        if not paths:
            return []
        size = self.encoder_config.image_size
        images = torch.stack([decode_image(p, size=size, where=str(p)) for p in paths])
        return self.caption_tensors(images, decode)

    def caption_video(
        self,
        path: str | os.PathLike[str],
        fps: float = 1.0,
        decode: DecodeConfig | None = None,
        scene_threshold: float = 0.05,
    ) -> list[dict[str, Any]]:
        """Captions of a video's keyframes, repeated consecutive captions merged:
        ``[{"start": s, "end": e, "caption": c}, ...]`` (seconds).

        Frames are sampled at ``fps``; a sampled frame is a keyframe when it differs from
        the last keyframe by more than ``scene_threshold`` (:func:`keyframes`; 0: every
        sampled frame), and only keyframes are captioned: a still shot costs one caption.
        """
        from polymodal.data.decode.image import IMAGENET_MEAN, IMAGENET_STD
        from polymodal.data.decode.stream import iter_video_frames

        size = self.encoder_config.image_size
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        captions: list[str] = []
        times: list[float] = []
        last = None
        for frames, t in iter_video_frames(path, fps, size=size, where=str(path)):
            keep, last = keyframes(frames, scene_threshold, last)  # (n,)
            said = iter(self.caption_tensors((frames[keep] - mean) / std, decode))
            for k in keep.tolist():  # a frame that is not a keyframe says what the last one said
                captions.append(next(said) if k else captions[-1])
            times += [float(x) for x in t]
        end = times[-1] + 1.0 / fps if times else 0.0
        return merge_repeats(captions, times, end)


def load_captioner(path: str | os.PathLike[str], device: str = "cpu") -> Captioner:
    """The captioner of a run folder or checkpoint folder (``runs/NAME``: its best)."""
    from polymodal.checkpoint import WEIGHTS, load_checkpoint, load_weights, resolve_checkpoint

    folder = resolve_checkpoint(path)
    ckpt = load_checkpoint(folder, with_trainer_state=False)
    if not (Path(folder) / CAPTIONER_FILE).is_file():
        raise ValueError(
            f"{str(path)!r} is not a captioning run: its checkpoint {folder} has no "
            f"{CAPTIONER_FILE}. Train one with task: captioning (configs/flickr8k_captioning.yaml)."
        )
    spec = ckpt.json(CAPTIONER_FILE)
    tokenizer = CaptionTokenizer.from_json(ckpt.text(VOCAB_FILE))
    enc_cfg = ImageEncoderConfig.from_dict(spec["encoder"])
    model_cfg = CaptionModelConfig.from_dict(spec["model"])
    decoder = CaptionDecoder(model_cfg, len(tokenizer), int(spec["feature_dim"]))
    load_weights(decoder, ckpt.weights, str(folder / WEIGHTS))
    dev = torch.device(device)
    return Captioner(
        build_image_encoder(enc_cfg).to(dev),
        decoder.to(dev).eval(),
        tokenizer,
        enc_cfg,
        DecodeConfig.from_dict(spec["decode"]),
    )


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an image by its suffix (otherwise: a video)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


__all__ = [
    "CAPTIONER_FILE",
    "VOCAB_FILE",
    "Captioner",
    "captioner_files",
    "is_image_file",
    "load_captioner",
]
