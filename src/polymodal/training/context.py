"""The context task: classify each utterance from the other utterances of its video.

:class:`ContextStrategy` trains a :class:`~polymodal.models.context.ContextModel` on the
one loop.  Its examples are videos (:class:`~polymodal.data.context.VideoDataset`) of
different lengths with a label per utterance:

    validation = whole videos carved from train (VideoDataset.split_videos)
    a step = a batch of videos (``data.batch_size`` videos, in a seeded order per epoch)
    loss = cross-entropy over real utterances only (padding ignored)
    metrics = per utterance (accuracy, macro_f1, loss), comparable with utterance-level runs
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace

import torch
from torch import Tensor

from polymodal.data.context import VideoBatch, VideoDataset
from polymodal.inference import SCHEMA_FILE, evaluate_videos
from polymodal.losses.supervised import sequence_loss
from polymodal.models.build import build_model
from polymodal.models.context import ContextModel
from polymodal.training.config import ContextTrainConfig
from polymodal.training.data import EpochBatches, split_loader
from polymodal.training.distributed import current
from polymodal.training.loop import CONFIG_FILE, Strategy
from polymodal.training.missing import check_monitor_without, with_missing
from polymodal.training.perturb import build_perturbation
from polymodal.training.seed import seed_everything
from polymodal.training.tasks import register_task


class ContextStrategy(Strategy):
    """Trains a :class:`ContextModel` on videos; selects on validation videos.

    Args:
        cfg: the run's :class:`ContextTrainConfig`.
        model: the context model.
        train, val, test: video views of the splits (no video on two sides).
    """

    cfg: ContextTrainConfig
    model: ContextModel
    drops_modalities = True  # monitor_without

    def __init__(
        self,
        cfg: ContextTrainConfig,
        model: ContextModel,
        train: VideoDataset,
        val: VideoDataset,
        test: VideoDataset | None = None,
    ) -> None:
        for name, ds in (("train", train), ("validation", val), ("test", test)):
            if ds is not None and not isinstance(ds, VideoDataset):
                raise TypeError(
                    f"The context task's {name} set must be a VideoDataset, got "
                    f"{type(ds).__name__}."
                )
        shared = sorted(set(train.videos) & set(val.videos))
        if shared:
            raise ValueError(
                f"Videos {shared[:3]} are in both train and validation; carve validation by "
                "video (VideoDataset.split_videos)."
            )
        check_monitor_without(cfg.monitor_without, val.schema.names)
        self.cfg = cfg
        self.model = model
        self.splits = {"train": train, "val": val, "test": test}
        self.perturbation = build_perturbation(
            cfg.optim.perturb, train.schema, cfg.seed, current().rank
        )

    def steps_per_epoch(self) -> int:
        train = self.splits["train"]
        assert train is not None
        return math.ceil(len(train) / self.cfg.data.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[VideoBatch]:
        train = self.splits["train"]
        assert train is not None
        # the order of train.batches(shuffle=True, seed=seed + epoch); a rank's share of it
        order = EpochBatches(
            len(train), self.cfg.data.batch_size, self.cfg.seed, epoch, start, current()
        )
        return (train.batch(rows) for rows in order)

    def loss(self, batch: VideoBatch) -> tuple[Tensor, int]:
        if batch.target is None:
            raise ValueError("A training batch of videos has no labels.")
        if self.perturbation is not None:  # the utterances, on the host
            batch = replace(batch, utterances=self.perturbation(batch.utterances))
        batch = batch.to(self.device)
        out = self.model(batch)
        assert batch.target is not None
        return sequence_loss(out.logits, batch.target), int(batch.mask.sum())

    def evaluate(self, split: str) -> dict[str, float] | None:
        ds = self.splits[split]
        if ds is None:
            return None
        cfg = self.cfg
        return with_missing(
            lambda transform: evaluate_videos(
                self.model, ds, cfg.data.batch_size, self.device, cfg.precision, transform
            ),
            cfg.monitor,
            cfg.monitor_without,
        )

    def generators(self) -> dict[str, torch.Generator]:
        extra = {} if self.perturbation is None else self.perturbation.generators()
        return {**super().generators(), **extra}

    def files(self) -> dict[str, str]:
        val = self.splits["val"]
        assert val is not None
        schema = val.schema
        return {CONFIG_FILE: self.cfg.to_yaml(), SCHEMA_FILE: json.dumps(schema.to_dict())}


@register_task(
    "context", "classify each utterance in its video's context (MOSI)", ContextTrainConfig
)
def build_context(cfg: ContextTrainConfig) -> ContextStrategy:
    """Load ``cfg``'s splits as videos and build the utterance and context models."""
    d = cfg.data
    load = split_loader(d)
    full = VideoDataset(load(d.train_split))
    if d.val_split is not None:
        train, val = full, VideoDataset(load(d.val_split))
    else:
        train, val = full.split_videos(d.val_fraction, d.carve_seed(cfg.seed))
    test = VideoDataset(load(d.test_split)) if d.test_split is not None else None
    seed_everything(cfg.seed)
    utterance_model = build_model(cfg.model, full.schema, seed=cfg.seed)
    model = ContextModel(utterance_model, **cfg.context.to_dict())
    return ContextStrategy(cfg, model, train, val, test)


__all__ = ["ContextStrategy", "build_context"]
