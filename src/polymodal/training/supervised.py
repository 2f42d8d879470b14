"""The supervised task: a model learns the data's labels (classification, regression,
multilabel), one example per row.

:class:`SupervisedStrategy` is the loop's strategy for it: batches from a seeded
:class:`~polymodal.training.data.EpochBatches`, the task's loss
(:func:`~polymodal.losses.task_loss`) plus, with ``optim.aux_loss_weight``, a loss on each
modality's own predictions (decision-level fusions), and :func:`~polymodal.inference.evaluate`
on the validation and test splits (a late fusion with ``calibrate: true`` first fits its
per-modality temperatures on each validation pass: :mod:`polymodal.training.calibration`).
``optim.balance`` plugs a modality-imbalance method
(:mod:`polymodal.training.balance`) into its loss, :meth:`~SupervisedStrategy.before_step`
and :meth:`~SupervisedStrategy.end_epoch`; ``optim.perturb`` damages training batches at
random before the model sees them (:mod:`polymodal.training.perturb`).  Build it yourself to
train a model you assembled::

    strategy = SupervisedStrategy(cfg, model, train_ds, val_ds, test_ds)
    result = Trainer(cfg, strategy).fit()
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.sample import Batch
from polymodal.inference import SCHEMA_FILE, calibrate_groups, data_loader, evaluate, model_logits
from polymodal.losses.supervised import task_loss
from polymodal.metrics import task_metrics
from polymodal.models.build import build_model
from polymodal.training.balance import build_balancer
from polymodal.training.calibration import calibrated_fusion, fit_temperatures, fitted_temperatures
from polymodal.training.config import TrainConfig
from polymodal.training.data import EpochBatches, build_datasets
from polymodal.training.distributed import current
from polymodal.training.loop import CONFIG_FILE, Strategy, module_generators
from polymodal.training.missing import check_monitor_without, with_missing
from polymodal.training.perturb import build_perturbation
from polymodal.training.seed import seed_everything
from polymodal.training.tasks import register_task


def repeat_each(batches: Iterator[Batch], times: int, skip: int = 0) -> Iterator[Batch]:
    """Yield every batch ``times`` times in a row, the first one ``skip`` times fewer (a
    run resumed part way through a batch's repeats)."""
    for batch in batches:
        for _ in range(times - skip):
            yield batch
        skip = 0


class SupervisedStrategy(Strategy):
    """Trains ``model`` on ``train_ds``, selects on ``val_ds``, reports ``test_ds`` once.

    Args:
        cfg: the run's :class:`TrainConfig`.
        model: returns a ``ModelOutput`` (``.logits`` (B, K), optional ``.modality_logits``)
            from a :class:`~polymodal.data.sample.Batch`; ``model.task`` and
            ``model.num_outputs`` are read when present, else the data set's target.
        train_ds, val_ds, test_ds: data sets with the same schema.
    """

    cfg: TrainConfig
    shardable = True  # distributed.parallel=fsdp (the loss and evaluate call model's forward)
    drops_modalities = True  # monitor_without

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        train_ds: MultimodalDataset,
        val_ds: MultimodalDataset,
        test_ds: MultimodalDataset | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.splits = {"train": train_ds, "val": val_ds, "test": test_ds}
        self.schema = train_ds.schema
        target = self.schema.target
        self.task: str = getattr(model, "task", target.task)
        if self.task != target.task:
            raise ValueError(
                f"The model's task is {self.task!r} but data set {train_ds.name!r} has task "
                f"{target.task!r}. Build the model from this data set's schema."
            )
        num_outputs = int(getattr(model, "num_outputs", target.num_classes))
        names = task_metrics(self.task, num_outputs)
        if cfg.monitor not in names:
            raise ValueError(
                f"monitor={cfg.monitor!r} is not computed for a {self.task} task with "
                f"{num_outputs} outputs; choose one of {names}, e.g. monitor={names[0]}."
            )
        check_monitor_without(cfg.monitor_without, self.schema.names)
        for name, ds in self.splits.items():
            if ds is not None and len(ds) == 0:
                raise ValueError(f"The {name} data set is empty; check data.* in the config.")
        optim = cfg.optim
        self.balancer = build_balancer(
            optim.balance, model, self.task, optim.regression_loss, cfg.seed
        )
        if self.balancer is not None and current().is_distributed:
            raise ValueError(
                f"optim.balance={optim.balance.method} runs in a single process only: its "
                "gradient changes would differ between torchrun's ranks. Train without "
                "torchrun, or with optim.balance=none."
            )
        self.calibrated = calibrated_fusion(model) is not None
        if self.calibrated and current().is_distributed:
            raise ValueError(
                "model.fusion.params.calibrate=true fits temperatures on the validation split "
                "in one process; under torchrun the ranks' models would differ. Train without "
                "torchrun, or with calibrate=false."
            )
        if (
            self.calibrated
            and self.balancer is not None
            and self.balancer.eval_model() is not model
        ):
            raise ValueError(
                f"model.fusion.params.calibrate=true fits the late fusion's temperatures, but "
                f"optim.balance={optim.balance.method} predicts with its own combination of the "
                "modalities. Set calibrate=false, or choose another balance method."
            )
        # what evaluation fits temperatures for: a calibrated late fusion, or MLA's own fusion
        self.fits_temperatures = calibrated_fusion(self.eval_model()) is not None
        self.perturbation = build_perturbation(optim.perturb, self.schema, cfg.seed, current().rank)
        extra = None if self.balancer is None else self.balancer.module()
        # The optimiser trains the balancer's own heads too; checkpoints keep them apart.
        self._trainable = (
            model if extra is None else nn.ModuleDict({"model": model, "balance": extra})
        )
        self._sampler: EpochBatches | None = None
        self._loader: DataLoader[Batch] | None = None

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        if self.balancer is not None:
            self.balancer.to(device)
        # encoders that standardise by speaker read each training and validation group's
        # unlabelled examples once (the test split's, when it is evaluated)
        for split in ("train", "val"):
            ds = self.splits[split]
            if ds is not None:
                calibrate_groups(self.model, ds, self.cfg.data.batch_size, device)

    def trainable(self) -> nn.Module:
        return self._trainable

    def _repeats(self) -> int:
        """Optimisation steps per training batch: 1, or one per modality for MLA."""
        return 1 if self.balancer is None else self.balancer.steps_per_batch

    def steps_per_epoch(self) -> int:
        train = self.splits["train"]
        assert train is not None
        return self._repeats() * math.ceil(len(train) / self.cfg.data.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[Batch]:
        train, bs = self.splits["train"], self.cfg.data.batch_size
        assert train is not None
        if self.balancer is not None:
            self.balancer.epoch = epoch
        if self._loader is None:
            # one loader for the whole run: its worker processes (data.num_workers) start
            # once, not every epoch; the batch sampler moves from epoch to epoch (under
            # torchrun it yields this rank's share of each global batch)
            self._sampler = EpochBatches(len(train), bs, self.cfg.seed, epoch, start, current())
            self._loader = data_loader(
                train,
                bs,
                num_workers=self.cfg.data.num_workers,
                seed=self.cfg.seed,
                pin_memory=self.device.type == "cuda",
                persistent_workers=True,
                batch_sampler=self._sampler,
            )
        assert self._sampler is not None
        k = self._repeats()
        self._sampler.set_epoch(epoch, start // k)
        return repeat_each(iter(self._loader), k, skip=start % k)

    def close(self) -> None:
        self._loader = self._sampler = None  # its worker processes exit

    def loss(self, batch: Batch) -> tuple[Tensor, int]:
        if batch.target is None:
            raise ValueError("A training batch has no targets; training needs labelled data.")
        if self.perturbation is not None:
            batch = self.perturbation(batch)  # on the host, before the encoders
        batch = batch.to(self.device, non_blocking=True)
        if self.balancer is not None:
            return self.balancer.loss(batch, self.fused_loss), batch.batch_size
        return self.fused_loss(self.model(batch), batch), batch.batch_size

    def fused_loss(self, out: object, batch: Batch) -> Tensor:
        """The task's loss of the model output ``out`` on ``batch``, plus the auxiliary
        per-modality loss of ``optim.aux_loss_weight``."""
        target = batch.target
        assert target is not None
        optim = self.cfg.optim
        loss = task_loss(self.task, model_logits(out), target, optim.regression_loss)
        mod_logits = getattr(out, "modality_logits", None)
        if optim.aux_loss_weight > 0 and mod_logits:
            aux = []
            for name in sorted(mod_logits):
                per = task_loss(self.task, mod_logits[name], target, optim.regression_loss, "none")
                present = (
                    batch[name].present.to(per.dtype) if name in batch else torch.ones_like(per)
                )
                aux.append((per * present).sum() / present.sum().clamp_min(1.0))
            loss = loss + optim.aux_loss_weight * torch.stack(aux).mean()
        return loss

    def before_step(self) -> None:
        if self.balancer is not None:
            self.balancer.before_step()

    def end_epoch(self, epoch: int) -> dict[str, float]:
        if self.balancer is None:
            return {}
        val = self.splits["val"]
        assert val is not None

        def val_batches() -> Iterator[Batch]:
            loader = data_loader(
                val, self.cfg.data.batch_size, num_workers=self.cfg.data.num_workers
            )
            return (b.to(self.device) for b in loader)

        return self.balancer.end_epoch(epoch, val_batches)

    def evaluate(self, split: str) -> dict[str, float] | None:
        ds = self.splits[split]
        if ds is None:
            return None
        model = self.eval_model()
        cfg = self.cfg
        if split == "val" and self.fits_temperatures:  # the temperatures, then the scores
            fit_temperatures(
                model, ds, self.device, cfg.data.batch_size, cfg.precision, cfg.data.num_workers
            )
        return with_missing(
            lambda transform: evaluate(
                model,
                ds,
                self.task,
                self.device,
                cfg.data.batch_size,
                cfg.precision,
                cfg.optim.regression_loss,
                cfg.data.num_workers,
                transform=transform,
            ),
            cfg.monitor,
            cfg.monitor_without,
        )

    def eval_model(self) -> nn.Module:
        """What evaluation runs: the model, or a balance method's own combination (MLA)."""
        return self.model if self.balancer is None else self.balancer.eval_model()

    def info(self) -> dict[str, Any]:
        temperatures = fitted_temperatures(self.eval_model())
        return {} if temperatures is None else {"modality_temperatures": temperatures}

    def checkpoint_state(self) -> dict[str, Any]:
        # MLA's calibrated fusion wraps the model, so its temperatures are not among the
        # weights: every checkpoint carries them for load_trained
        if not self.fits_temperatures or self.eval_model() is self.model:
            return {}
        return self.info()

    def extra_state(self) -> dict[str, Tensor]:
        return {} if self.balancer is None else self.balancer.state()

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if self.balancer is not None:
            self.balancer.load_state(state)

    def generators(self) -> dict[str, torch.Generator]:
        balance = {} if self.balancer is None else self.balancer.generators()
        perturb = {} if self.perturbation is None else self.perturbation.generators()
        return {**module_generators(self.model), **balance, **perturb}

    def files(self) -> dict[str, str]:
        return {CONFIG_FILE: self.cfg.to_yaml(), SCHEMA_FILE: json.dumps(self.schema.to_dict())}


@register_task("supervised", "learn the labels of the examples (the default)", TrainConfig)
def build_supervised(cfg: TrainConfig) -> SupervisedStrategy:
    """Load ``cfg``'s splits and build its model (seeded by ``cfg.seed``)."""
    train_ds, val_ds, test_ds = build_datasets(cfg.data, cfg.seed)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, train_ds.schema, seed=cfg.seed)
    return SupervisedStrategy(cfg, model, train_ds, val_ds, test_ds)


__all__ = ["SupervisedStrategy", "build_supervised"]
