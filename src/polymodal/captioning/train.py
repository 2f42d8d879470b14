"""The captioning task: train a caption decoder on a frozen image encoder's features.

A ``task: captioning`` run (:class:`CaptionTrainConfig`, ``configs/flickr8k_captioning.yaml``)::

    setup: the frozen encoder's feature sequences of every split, once (feature cache)
    vocabulary: MiniLM WordPiece pieces seen >= data.min_count times in train captions
    a step = optim.batch_size images x all their captions (Flickr8k: 5 each), teacher
             forcing, cross-entropy with label smoothing over the real tokens
    validation = the data set's own dev split (Flickr8k ``val``), decoded with ``decode``,
             scored by BLEU-1..4 and CIDEr-D (percent); ``monitor`` (bleu_4) selects
    test = once, with the best weights

``checkpoints/best`` is what ``polymodal caption RUN IMAGE...`` reads
(:mod:`polymodal.captioning.captioner`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.captioning.captioner import captioner_files
from polymodal.captioning.decoding import DecodeConfig, generate
from polymodal.captioning.features import (
    ImageEncoderConfig,
    build_image_encoder,
    sequence_features,
)
from polymodal.captioning.metrics import CiderD, caption_scores
from polymodal.captioning.model import CaptionDecoder, CaptionModelConfig
from polymodal.captioning.scst import scst_loss
from polymodal.captioning.tokenizer import PAD, CaptionTokenizer
from polymodal.config import Config, param
from polymodal.training.config import OptimConfig, RunConfig
from polymodal.training.loop import CONFIG_FILE, Strategy
from polymodal.training.tasks import register_task

logger = logging.getLogger("polymodal.training")

#: What a captioning run can monitor (validation, percent).
CAPTION_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d", "loss")


@dataclass(frozen=True, kw_only=True)
class CaptionDataConfig(Config):
    """The images and their reference captions.

    Args:
        dataset: a built-in data set with an ``image`` modality and a ``captions()`` method
            (every image's reference captions): ``flickr8k``.
        root: its folder (``None``: ``$POLYMODAL_DATA`` or the cache).
        options: further keyword options of its loader.
        train_split, val_split, test_split: the splits; validation is the data set's own
            dev split (model selection never sees test); ``test_split: null`` skips test.
        limit: use only the first ``limit`` images of each split (smoke tests).
        min_count: keep WordPiece pieces seen this often in the training captions; rarer
            ones become ``[UNK]``.
    """

    dataset: str = "flickr8k"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str | None = "test"
    limit: int | None = param(None, ge=1)
    min_count: int = param(5, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.val_split in (self.train_split, self.test_split):
            raise ValueError(
                f"data.val_split ({self.val_split!r}) must differ from train_split and "
                "test_split: selecting on them would make the scores optimistic."
            )


@dataclass(frozen=True, kw_only=True)
class CaptionOptim(OptimConfig):
    """:class:`~polymodal.training.config.OptimConfig` plus the captioning loss's settings.

    Args:
        batch_size: images per step (each with all its captions).
        label_smoothing: of the cross-entropy over the vocabulary.
        objective: ``xe``, teacher-forced cross-entropy on the references; or ``scst``,
            self-critical training on the model's own samples rewarded by CIDEr-D
            (:mod:`polymodal.captioning.scst`), usually from an ``xe`` run (``init_from``)
            with a learning rate ~10x lower.
        samples: captions drawn per image per ``scst`` step.
    """

    batch_size: int = param(50, ge=1)
    label_smoothing: float = param(0.1, ge=0, lt=1)
    objective: Literal["xe", "scst"] = "xe"
    samples: int = param(5, ge=2)


@dataclass(frozen=True, kw_only=True)
class CaptionTrainConfig(RunConfig):
    """A captioning run (``task: captioning``).

    Args:
        data: :class:`CaptionDataConfig`.
        encoder: the frozen image encoder (:class:`ImageEncoderConfig`).
        model: the decoder (:class:`CaptionModelConfig`).
        decode: how validation and test captions (and ``polymodal caption``'s, by
            default) are generated (:class:`DecodeConfig`).
        optim: :class:`CaptionOptim`.
        monitor: ``bleu_4`` (default), ``bleu_1``..``bleu_3``, ``cider_d`` or ``loss`` (the
            teacher-forced cross-entropy).
        feature_cache: root of the cached feature sequences (``None``: the default).
        init_from: a captioning run or checkpoint folder whose decoder weights start this
            run (``None``: random); its vocabulary and ``model`` must equal this run's (the
            same training captions and ``data.min_count``).
    """

    example = "See configs/flickr8k_captioning.yaml."

    task: Literal["captioning"] = "captioning"
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    model: CaptionModelConfig = field(default_factory=CaptionModelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    optim: CaptionOptim = field(default_factory=CaptionOptim)
    monitor: str = "bleu_4"
    feature_cache: str | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.monitor not in CAPTION_METRICS:
            raise ValueError(
                f"monitor={self.monitor!r} is not a caption metric; choose one of "
                f"{list(CAPTION_METRICS)}."
            )


@dataclass
class _Split:
    """A split's images: ids, reference captions, and (after setup) feature sequences."""

    name: str
    dataset: Any
    ids: list[str]
    references: list[list[str]]
    features: Tensor | None = None


def _load_split(data: CaptionDataConfig, split: str, image_size: int) -> _Split:
    from polymodal.data.datasets import load_dataset

    options = dict(data.options)
    if data.dataset == "flickr8k":
        options.setdefault("modalities", ["image"])  # the captions come from captions()
        options.setdefault("image_size", image_size)  # what the captioner decodes to
    ds: Any = load_dataset(data.dataset, split=split, root=data.root, **options)
    if not callable(getattr(ds, "captions", None)):
        raise TypeError(
            f"data.dataset={data.dataset!r} has no captions() method (each image's reference "
            "captions); captioning needs one, e.g. flickr8k."
        )
    n = len(ds) if data.limit is None else min(data.limit, len(ds))
    return _Split(split, ds, ds.ids()[:n], [list(c) for c in ds.captions()[:n]])


class CaptionStrategy(Strategy):
    """Trains a :class:`CaptionDecoder` on cached feature sequences (module docstring).

    Args:
        cfg: the run's :class:`CaptionTrainConfig`.
        model: the decoder.
        tokenizer: its vocabulary.
        splits: ``"train"``, ``"val"`` and optionally ``"test"`` images with references.
    """

    cfg: CaptionTrainConfig
    model: CaptionDecoder

    def __init__(
        self,
        cfg: CaptionTrainConfig,
        model: CaptionDecoder,
        tokenizer: CaptionTokenizer,
        splits: dict[str, _Split],
    ) -> None:
        self.cfg, self.model, self.tokenizer, self.splits = cfg, model, tokenizer, splits
        for name, split in splits.items():
            if any(not r for r in split.references):
                raise ValueError(
                    f"Every {name} image needs at least one reference caption; "
                    f"{split.ids[[len(r) for r in split.references].index(0)]!r} has none."
                )
        self.tokens = {name: self._encode(s.references) for name, s in splits.items()}
        self.feature_seconds = 0.0
        self.feature_hits = 0
        self.sampler = torch.Generator().manual_seed(cfg.seed)
        self.scorer: CiderD | None = None
        self.rewards = torch.zeros(2, dtype=torch.float64)  # the epoch's reward sum, steps

    def _encode(self, refs: list[list[str]]) -> Tensor:
        """Each image's captions as decoder ids, (N, R, T); R = the most captions of an
        image, fewer padded with all-``[PAD]`` rows (no loss)."""
        r = max(len(x) for x in refs)
        flat = [c for x in refs for c in x]
        ids = self.tokenizer.encode(flat, self.cfg.model.max_length)  # (sum R_i, T)
        out = torch.full((len(refs), r, ids.shape[1]), PAD, dtype=torch.long)
        k = 0
        for i, x in enumerate(refs):
            out[i, : len(x)] = ids[k : k + len(x)]
            k += len(x)
        return out

    def setup(self, device: torch.device) -> None:
        start = time.perf_counter()
        encoder = build_image_encoder(self.cfg.encoder)
        for split in self.splits.values():
            if split.features is None:
                split.features, hit = sequence_features(
                    encoder,
                    self.cfg.encoder,
                    split.dataset,
                    split.ids,
                    name=self.cfg.data.dataset,
                    split=split.name if self.cfg.data.limit is None else f"{split.name}-lim",
                    root=self.cfg.feature_cache,
                )
                self.feature_hits += int(hit)
        self.feature_seconds = time.perf_counter() - start
        logger.info("feature sequences ready in %.1fs", self.feature_seconds)
        if self.cfg.optim.objective == "scst":
            self.scorer = CiderD(self.splits["train"].references)
        super().setup(device)
        for split in self.splits.values():
            assert split.features is not None
            split.features = split.features.to(device)
        self.tokens = {k: v.to(device) for k, v in self.tokens.items()}

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits["train"].ids) / self.cfg.optim.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(self.cfg.seed + epoch)
        order = torch.randperm(len(self.splits["train"].ids), generator=gen)
        bs = self.cfg.optim.batch_size
        for step in range(start, self.steps_per_epoch()):
            yield order[step * bs : (step + 1) * bs]

    def _loss(self, split: str, rows: Tensor, smoothing: float) -> Tensor:
        feats = self.splits[split].features
        assert feats is not None, "call setup() first"
        tokens = self.tokens[split][rows]  # (B, R, T)
        repeats = tokens.shape[1]
        tokens = tokens.flatten(0, 1)  # (B*R, T)
        length = int((tokens != PAD).sum(1).max())
        tokens = tokens[:, :length]
        logits = self.model(feats[rows], tokens[:, :-1], repeats)  # (B*R, T-1, V)
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),  # fp32 under bf16 autocast
            tokens[:, 1:].reshape(-1),
            ignore_index=PAD,
            label_smoothing=smoothing,
        )

    def loss(self, batch: Tensor) -> tuple[Tensor, int]:
        rows = batch.to(self.device)
        if self.scorer is None:
            return self._loss("train", rows, self.cfg.optim.label_smoothing), int(rows.numel())
        feats = self.splits["train"].features
        assert feats is not None, "call setup() first"
        loss, reward = scst_loss(
            self.model,
            feats[rows],
            batch.tolist(),
            self.scorer,
            self.tokenizer,
            self.cfg.optim.samples,
            self.sampler,
        )
        self.rewards += torch.tensor([reward, 1.0], dtype=torch.float64)
        return loss, int(rows.numel())

    def end_epoch(self, epoch: int) -> dict[str, float]:
        if not self.rewards[1]:
            return {}
        mean = float(self.rewards[0] / self.rewards[1])
        self.rewards = torch.zeros(2, dtype=torch.float64)
        return {"train_cider_d": 100.0 * mean}  # the epoch's mean sampled reward, percent

    def extra_state(self) -> dict[str, Tensor]:
        return {"scst_rewards": self.rewards.clone()}  # a run killed mid-epoch keeps them

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if "scst_rewards" in state:
            self.rewards = state["scst_rewards"].clone().to(torch.float64)

    def generators(self) -> dict[str, torch.Generator]:
        return {"scst_sampler": self.sampler}

    def captions(self, split: str, decode: DecodeConfig | None = None) -> list[str]:
        """The generated captions of ``split``'s images (after :meth:`setup`)."""
        feats = self.splits[split].features
        assert feats is not None, "call setup() first"
        return generate(self.model, feats, self.tokenizer, decode or self.cfg.decode)

    def evaluate(self, split: str) -> dict[str, float] | None:
        if split not in self.splits:
            return None
        scores = caption_scores(self.captions(split), self.splits[split].references)
        was_training = self.model.training
        self.model.eval()
        n, bs, total = len(self.splits[split].ids), self.cfg.optim.batch_size, 0.0
        with torch.no_grad():
            for s in range(0, n, bs):
                rows = torch.arange(s, min(n, s + bs), device=self.device)
                total += float(self._loss(split, rows, 0.0)) * rows.numel()
        self.model.train(was_training)
        # the teacher-forced loss breaks ties of the monitor (a tiny run's BLEU-4 of 0)
        return {**scores, "loss": total / n}

    def higher_is_better(self, monitor: str) -> bool:
        return monitor != "loss"

    def files(self) -> dict[str, str]:
        feats = self.splits["train"].features
        dim = self.model.feature_dim if feats is None else int(feats.shape[-1])
        return {
            CONFIG_FILE: self.cfg.to_yaml(),
            **captioner_files(
                self.cfg.encoder, self.cfg.model, self.cfg.decode, dim, self.tokenizer
            ),
        }

    def info(self) -> dict[str, Any]:
        return {
            "feature_seconds": self.feature_seconds,
            "feature_cache_hits": self.feature_hits,
            "vocab_size": len(self.tokenizer),
        }


#: The feature size of the registered encoders the captioner knows without a forward pass.
_FEATURE_DIMS = {"efficientnet_lite0": 1280}


@register_task("captioning", "caption images with a cross-attention decoder", CaptionTrainConfig)
def build_captioning(cfg: CaptionTrainConfig) -> CaptionStrategy:
    """Load the splits, build the vocabulary from the training captions and the decoder
    (seeded by ``cfg.seed``); the feature sequences are computed in setup."""
    d = cfg.data
    size = cfg.encoder.image_size
    splits = {
        "train": _load_split(d, d.train_split, size),
        "val": _load_split(d, d.val_split, size),
    }
    if d.test_split is not None:
        splits["test"] = _load_split(d, d.test_split, size)
    flat = [c for refs in splits["train"].references for c in refs]
    tokenizer = CaptionTokenizer.build(flat, d.min_count)
    dim = cfg.encoder.params.get("dim") or _FEATURE_DIMS.get(cfg.encoder.name)
    if dim is None:  # another encoder: its output size from one image
        from polymodal.captioning.features import encode_images

        image = splits["train"].dataset[0].modalities["image"][None]
        dim = encode_images(build_image_encoder(cfg.encoder), image).shape[-1]
    torch.manual_seed(cfg.seed)
    model = CaptionDecoder(cfg.model, len(tokenizer), int(dim))
    if cfg.init_from is not None:
        _init_from(model, tokenizer, cfg.init_from, cfg.model)
    return CaptionStrategy(cfg, model, tokenizer, splits)


def _init_from(
    model: CaptionDecoder, tokenizer: CaptionTokenizer, init_from: str, config: CaptionModelConfig
) -> None:
    """Load ``init_from``'s decoder weights into ``model`` after checking they match."""
    from polymodal.captioning.captioner import CAPTIONER_FILE, VOCAB_FILE
    from polymodal.checkpoint import WEIGHTS, load_checkpoint, load_weights, resolve_checkpoint

    folder = resolve_checkpoint(init_from)
    if not (folder / CAPTIONER_FILE).is_file():
        raise ValueError(
            f"init_from={init_from!r} is not a captioning run: its checkpoint {folder} has "
            f"no {CAPTIONER_FILE}."
        )
    ckpt = load_checkpoint(folder, with_trainer_state=False)
    theirs = CaptionModelConfig.from_dict(ckpt.json(CAPTIONER_FILE)["model"])
    if theirs != config:
        raise ValueError(
            f"init_from={init_from!r}: its decoder is {theirs.to_dict()}, this run's model "
            f"is {config.to_dict()}; use the same model settings."
        )
    if CaptionTokenizer.from_json(ckpt.text(VOCAB_FILE)).pieces != tokenizer.pieces:
        raise ValueError(
            f"init_from={init_from!r} was trained with another vocabulary; use the same "
            "training captions and data.min_count as that run."
        )
    load_weights(model, ckpt.weights, str(folder / WEIGHTS))
    logger.info("decoder initialised from %s", folder)


__all__ = [
    "CAPTION_METRICS",
    "CaptionDataConfig",
    "CaptionOptim",
    "CaptionStrategy",
    "CaptionTrainConfig",
    "build_captioning",
]
