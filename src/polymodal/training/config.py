"""Run configs: what every training task shares, and the supervised and context tasks' own.

A run is one YAML file; its top-level ``task`` picks the training mode (a strategy of the
one loop, :mod:`polymodal.training.loop`) and with it the config class:

============ ======================== ===============================================
task         config                   trains
============ ======================== ===============================================
supervised   :class:`TrainConfig`      a :class:`~polymodal.models.MultimodalModel` on
(default)                             labelled examples (classification, regression,
                                      multilabel)
context      :class:`ContextTrainConfig` an utterance model plus a sequence model over
                                      each video's utterances
contrastive  :class:`~polymodal.joint.train.JointTrainConfig`  a joint embedding space
captioning   :class:`~polymodal.captioning.train.CaptionTrainConfig`  a caption decoder
                                      on a frozen image encoder's feature sequence
============ ======================== ===============================================

Every config is a :class:`polymodal.config.Config`: unknown keys fail with the valid ones
and a suggestion, types are coerced by type hint, NaN/inf and out-of-range numbers are
refused.  :func:`load_config` reads any run file, applies ``key=value`` overrides and
returns the config of its task::

    name: mosi
    data: {dataset: mosi, options: {modalities: [text, audio, video]}}
    model: {encoders: {...}, fusion: {name: early}, head: {...}}   # polymodal.models
    optim: {lr: 1.0e-3, epochs: 10}
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from polymodal.config import Config, param, read_config_file
from polymodal.errors import unknown_name_error
from polymodal.metrics import HIGHER_IS_BETTER
from polymodal.models.config import ModelConfig
from polymodal.models.context import ContextConfig

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: What a context run can monitor (per-utterance metrics).
CONTEXT_MONITORS = ("accuracy", "macro_f1", "loss")


@dataclass(frozen=True, kw_only=True)
class DataConfig(Config):
    """Where the examples come from and how they are split and batched.

    Args:
        dataset: a built-in data set name (``polymodal datasets list``); or use ``manifest``.
        manifest: path of a user CSV/JSONL manifest (see ``polymodal.data.manifest``).
        shards: a folder written by ``polymodal shards write`` (see
            ``polymodal.data.webshards``): each split is read from its ``<split>.json``
            index, example for example as the source data set gave it.
        schema: path of a schema YAML/JSON for the manifest (``None``: inferred from it).
        root: folder holding the built-in data set (``None``: ``$POLYMODAL_DATA``, cache).
        options: keyword options of the data set's loader (e.g. ``modalities: [text, audio]``).
        train_split: split the model is trained on (validation is carved from it);
            ``None`` (manifests only): every row, for a manifest without a split column.
        test_split: split evaluated once at the end with the best weights; ``None``: none.
        val_split: a named validation split (e.g. Flickr8k's ``val``) instead of carving.
        val_fraction: fraction of train's *groups* (speakers, subjects, videos) held out
            for validation when ``val_split`` is ``None``.
        split_seed: seed of that carve (``None``: the run's ``seed``).  Runs of several
            seeds with one ``split_seed`` share their validation split, so a seed ensemble
            of them can be scored on it (``polymodal evaluate RUN RUN ... --split val``).
        batch_size: examples per optimisation step (videos per step for ``task: context``),
            over all processes of a ``torchrun`` run: each of N processes takes
            ``batch_size / N`` of them (the global batch; results match one process).
        num_workers: DataLoader worker processes (0: load in the main process).
    """

    dataset: str | None = None
    manifest: str | None = None
    shards: str | None = None
    schema: str | None = None
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str | None = "train"
    test_split: str | None = "test"
    val_split: str | None = None
    val_fraction: float = param(0.2, gt=0, lt=1)
    split_seed: int | None = None
    batch_size: int = param(32, ge=1)
    num_workers: int = param(0, ge=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [x for x in (self.dataset, self.manifest, self.shards) if x is not None]
        if len(given) != 1:
            raise ValueError(
                "data: set exactly one of 'data.dataset' (a built-in data set name), "
                "'data.manifest' (a CSV/JSONL path) or 'data.shards' (a folder of "
                f"`polymodal shards write`); got dataset={self.dataset!r}, "
                f"manifest={self.manifest!r}, shards={self.shards!r}."
            )
        if self.shards is not None and (self.schema is not None or self.options):
            raise ValueError(
                "data.schema and data.options apply when a manifest or data set is read; "
                "shards hold the examples as they were written, with their schema. Remove "
                "them, or set them when writing the shards."
            )
        if self.train_split is None and self.dataset is not None:
            raise ValueError(
                f"data.train_split=null means every row of a manifest; built-in data set "
                f"{self.dataset!r} needs a split name, e.g. data.train_split=train."
            )
        if self.val_split is not None and self.val_split == self.test_split:
            raise ValueError(
                f"data.val_split and data.test_split are both {self.val_split!r}: early "
                "stopping on the test split would make its metrics optimistic. Use another "
                "validation split, or val_split=null to carve one from train."
            )
        if self.split_seed is not None and self.val_split is not None:
            raise ValueError(
                f"data.split_seed seeds the carve of validation from train, but "
                f"data.val_split={self.val_split!r} is read as it is, so nothing is carved. "
                "Remove one of them."
            )

    def carve_seed(self, seed: int) -> int:
        """The seed of the validation carve of a run seeded ``seed``: ``split_seed`` when
        set, else ``seed``."""
        return seed if self.split_seed is None else self.split_seed


@dataclass(frozen=True, kw_only=True)
class OptimConfig(Config):
    """Optimiser and schedule: AdamW, linear warmup, cosine decay, gradient clipping.

    Args:
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (never applied to biases, norms and scalars).
        betas: AdamW betas.
        epochs: maximum passes over the training set.
        max_steps: stop after this many optimisation steps in total (``None``: no cap); the
            schedule spans ``min(epochs * steps_per_epoch, max_steps)`` steps.
        warmup_ratio: fraction of the steps with a linear warmup before cosine decay.
        warmup_steps: warmup steps, instead of ``warmup_ratio`` (``None``: use the ratio).
        min_lr_ratio: the cosine ends at ``min_lr_ratio * lr``.
        grad_clip: clip the global gradient norm to this (``None``: no clipping).
        time_limit: stop at the first step after this many seconds of training (summed over
            resumptions; ``None``: no limit); the run then finishes as any other: best
            checkpoint, test metrics, ``results.json`` (see
            :mod:`polymodal.training.timelimit`).
        lr_scale: learning-rate multipliers by parameter name: ``{prefix: multiplier}``, a
            prefix being a dotted module path of the trained model (``encoders.transcript``;
            under ``task: context`` ``utterance_model.encoders.transcript``); the longest
            prefix that covers a parameter wins, others get 1.  A prefix that matches no
            trainable parameter is an error.  The schedule scales each group's own rate.
        layer_decay: layer-wise learning-rate decay for encoders with ordered blocks
            (``minilm``: embeddings then 6 transformer blocks): the last block's parameters
            get ``lr * layer_decay``, the one below ``lr * layer_decay**2``, ..., the
            embeddings ``lr * layer_decay**7``; heads, fusion and other encoders keep ``lr``.
            Multiplies ``lr_scale``.  ``None``: no decay.
    """

    lr: float = param(1e-3, gt=0)
    weight_decay: float = param(0.01, ge=0)
    betas: tuple[float, float] = param((0.9, 0.999), ge=0, lt=1)
    epochs: int = param(20, ge=1)
    max_steps: int | None = param(None, ge=1)
    warmup_ratio: float = param(0.05, ge=0, lt=1)
    warmup_steps: int | None = param(None, ge=0)
    min_lr_ratio: float = param(0.0, ge=0, le=1)
    grad_clip: float | None = param(1.0, gt=0)
    time_limit: float | None = param(None, gt=0)
    lr_scale: dict[str, float] = param(default_factory=dict, gt=0)
    layer_decay: float | None = param(None, gt=0, le=1)


#: The modality-imbalance methods of :class:`BalanceConfig` (``none`` changes nothing).
BALANCE_METHODS = ("none", "ogm_ge", "gblend", "mla", "unimodal")


@dataclass(frozen=True, kw_only=True)
class BalanceConfig(Config):
    """How a supervised run counters modality imbalance (:mod:`polymodal.training.balance`).

    ``optim.balance=ogm_ge`` is short for ``optim.balance={method: ogm_ge}``; each method
    reads only its own keys below and ignores the others (their defaults are the papers').

    Args:
        method: ``none`` (plain training, bit for bit), ``ogm_ge`` (on-the-fly gradient
            modulation with generalisation enhancement, Peng et al. 2022; classification),
            ``gblend`` (gradient blending, Wang et al. 2020) or ``mla`` (alternating unimodal
            adaptation, Zhang et al. 2024; classification; one step per modality on each
            batch, so an epoch has M times the steps) or ``unimodal`` (the model's
            loss on each modality alone added to the fused loss; Wei & Hu 2024's multitask
            baseline).
        alpha: ``ogm_ge``: modulation strength; the dominant modality's encoder gradients
            are scaled by ``1 - tanh(alpha * (rho - 1))`` (0.8, the official setting).
        noise: ``ogm_ge``: add Gaussian noise with each gradient's own standard deviation
            (the "GE"); ``false`` is plain OGM.
        start_epoch, end_epoch: ``ogm_ge``: modulate in 0-based epochs ``start_epoch`` to
            ``end_epoch`` inclusive (``None``: to the end); the official code's 0 and 50.
        interval: ``gblend``: epochs between re-estimates of the loss weights (the online
            "super-epoch"); the first estimate compares the ends of epochs ``interval`` and
            ``2 * interval``, with equal weights until then.
        owm_alpha: ``mla``: the regulariser of the orthogonal projection of the shared
            head's gradients (smaller: closer to exactly orthogonal to earlier inputs).
        mla_fusion: ``mla``: how the modalities' own predictions are combined at
            evaluation (:class:`~polymodal.models.entropy.EntropyFusion`): ``entropy``
            (the paper's confidence weights) or ``calibrated`` (the mean of their logits,
            each modality's divided by a temperature fitted on the validation split after
            every validation pass, as a late fusion's ``calibrate: true``).
        unimodal_weight: ``unimodal``: w in ``fused loss + w * sum_m loss of modality m
            alone`` (1, the equal weighting of MMPareto's multitask baseline).
    """

    method: Literal["none", "ogm_ge", "gblend", "mla", "unimodal"] = "none"
    alpha: float = param(0.8, gt=0)
    noise: bool = True
    start_epoch: int = param(0, ge=0)
    end_epoch: int | None = param(50, ge=0)
    interval: int = param(1, ge=1)
    owm_alpha: float = param(0.1, gt=0)
    mla_fusion: Literal["entropy", "calibrated"] = "entropy"
    unimodal_weight: float = param(1.0, gt=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(
                f"optim.balance.end_epoch ({self.end_epoch}) is before start_epoch "
                f"({self.start_epoch}); set end_epoch >= start_epoch, or null for no end."
            )

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        """Also accepts a bare method name (``balance: gblend``)."""
        if isinstance(data, str):
            data = {"method": data}
        return super().from_dict(data, where)


@dataclass(frozen=True, kw_only=True)
class PerturbConfig(Config):
    """Training on damaged inputs, so the model degrades gracefully when a modality is noisy
    (:mod:`polymodal.training.perturb`; the perturbations of :mod:`polymodal.robustness`).

    For each training batch and each modality, independently with probability ``prob``, one
    of the modality's perturbations is drawn at random and applied to the whole batch's copy
    of that modality at a severity drawn uniformly from ``[0, max_severity]``.  Validation
    and test data are never perturbed.

    Args:
        prob: probability that a batch's modality is perturbed (0, the default: never).
        max_severity: the largest severity drawn, in (0, 1].
        perturbations: modality -> the perturbation names to draw from.  Empty (the
            default): every modality, each with every perturbation of its kind except
            ``missing`` (hiding a modality is ``model.modality_dropout``'s job).  An empty
            list leaves that modality clean.
    """

    prob: float = param(0.0, ge=0, le=1)
    max_severity: float = param(0.5, gt=0, le=1)
    perturbations: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SupervisedOptim(OptimConfig):
    """:class:`OptimConfig` plus the supervised loss's settings.

    Args:
        regression_loss: ``"mse"`` or ``"l1"`` for regression tasks.
        aux_loss_weight: weight of an auxiliary loss on each modality's own predictions
            (``modality_logits`` of the decision-level fusions late/hybrid); 0 disables it.
        balance: the modality-imbalance method and its settings (:class:`BalanceConfig`).
        perturb: training on perturbed inputs (:class:`PerturbConfig`; off by default).
    """

    regression_loss: Literal["mse", "l1"] = "mse"
    aux_loss_weight: float = param(0.0, ge=0)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)


@dataclass(frozen=True, kw_only=True)
class ContextOptim(OptimConfig):
    """:class:`OptimConfig` plus corruption training of the utterances.

    Args:
        perturb: training on perturbed utterances (:class:`PerturbConfig`; off by default).
    """

    perturb: PerturbConfig = field(default_factory=PerturbConfig)


@dataclass(frozen=True, kw_only=True)
class DistributedConfig(Config):
    """How a run trains over several processes (``torchrun``; :mod:`polymodal.training.distributed`).

    A single-process run reads none of these.

    Args:
        parallel: ``ddp`` (``DistributedDataParallel``: every rank holds the whole model
            and optimiser state) or ``fsdp`` (FSDP2 ``fully_shard``: each rank holds 1/N of
            the trainable parameters, gradients and optimiser state; for fine-tuning
            larger pretrained encoders; ``task: supervised``; see
            :mod:`polymodal.training.fsdp`).  Checkpoints are the same either way.
        find_unused: ``ddp``: let ``DistributedDataParallel`` find the parameters a step did not
            use (``find_unused_parameters``): needed when a step can skip an encoder (a
            modality missing from a whole batch); ``false`` is faster when every trainable
            parameter gets a gradient at every step.
        local_loss: ``task: contrastive``: each rank scores only its own rows against every
            rank's (open_clip's ``--local-loss``; less memory, the same gradient).
        gather_with_grad: ``task: contrastive``: gradients flow through the embeddings
            gathered from the other ranks (open_clip's ``--gather-with-grad``).
    """

    parallel: Literal["ddp", "fsdp"] = "ddp"
    find_unused: bool = True
    local_loss: bool = True
    gather_with_grad: bool = True


#: Config keys (dotted inside a section) that may change between a run and its resumption
#: without changing the result; ``optim.time_limit`` so that a stopped run can be given more.
RESUME_FREE_KEYS = frozenset(
    {
        "progress",
        "log_every",
        "checkpoint_every_steps",
        "device",
        "output_dir",
        "feature_cache",
        "optim.time_limit",
        "distributed",
        "compile",
    }
)


def resume_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The top-level keys in which two run configs (as dicts) differ, ignoring
    :data:`RESUME_FREE_KEYS`: a run resumes only when this is empty."""

    def kept(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = prefix + k
            if key in RESUME_FREE_KEYS:
                continue
            if isinstance(v, dict) and any(f.startswith(key + ".") for f in RESUME_FREE_KEYS):
                v = kept(v, key + ".")
            out[k] = v
        return out

    a, b = kept(saved), kept(now)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def mean_over_missing(monitor: str) -> str:
    """The selection metric of ``monitor_without``: ``<monitor>_mean_over_missing``."""
    return f"{monitor}_mean_over_missing"


@dataclass(frozen=True, kw_only=True)
class RunConfig(Config):
    """What every run has, whatever its task.

    Args:
        task: the training mode (see the module docstring).
        name: the run's name; the default output folder is ``runs/<name>``.
        seed: seeds parameter init, data order, dropout and the validation carve.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; also on CPU).
        monitor: validation metric that selects the best epoch and drives early stopping.
        patience: stop after this many epochs without a better ``monitor`` (``None``: never).
            An epoch that ties the best ``monitor`` with a lower validation loss counts as
            better.
        min_epochs: never stop early before this many epochs.
        monitor_without: modalities that validation also hides, one at a time (supervised
            and context runs; :mod:`polymodal.training.missing`): the best epoch is then the
            one with the best mean ``monitor`` over every modality present and each of
            these absent (``<monitor>_mean_over_missing``), for a model meant to work when
            a modality is missing (pair it with ``model.modality_dropout``).
        output_dir: the run folder (``None``: ``runs/<name>``).
        checkpoint_every_steps: also save ``last/`` every this many steps (``None``: at the
            end of each epoch only).
        log_every: steps between progress-bar updates.
        progress: show a tqdm progress bar (only on a terminal; rank 0 only under torchrun).
        compile: ``torch.compile`` the model's forward (``nn.Module.compile``: checkpoints
            keep their keys; with DDP and FSDP too; uncompiled with a warning when inductor
            has no C++ compiler or triton, :mod:`polymodal.training.compiled`).  Slower to
            start (minutes on a CPU with an empty inductor cache), faster per step for
            attention fusions (``benchmarks/compile.py``).
        distributed: settings of a run over several processes (:class:`DistributedConfig`).
    """

    task: str
    name: str = "run"
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    monitor: str = "accuracy"
    patience: int | None = param(5, ge=1)
    min_epochs: int = param(0, ge=0)
    monitor_without: tuple[str, ...] = ()
    output_dir: str | None = None
    checkpoint_every_steps: int | None = param(None, ge=1)
    log_every: int = param(10, ge=1)
    progress: bool = True
    compile: bool = False
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not DEVICE_PATTERN.match(self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}"
            )
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ValueError(
                f"name must be a non-empty folder name without slashes, got {self.name!r}"
            )

    @property
    def selection_metric(self) -> str:
        """The validation metric that selects the best epoch: ``monitor``, or its mean over
        the presence conditions of ``monitor_without``."""
        return mean_over_missing(self.monitor) if self.monitor_without else self.monitor

    @property
    def run_dir(self) -> Path:
        """The run folder: ``output_dir``, or ``runs/<name>``."""
        return Path(self.output_dir) if self.output_dir is not None else Path("runs") / self.name


@dataclass(frozen=True, kw_only=True)
class TrainConfig(RunConfig):
    """A supervised run (``task: supervised``, the default).

    Args:
        data: :class:`DataConfig`.
        model: :class:`polymodal.models.config.ModelConfig`.
        optim: :class:`SupervisedOptim`.
        monitor: ``accuracy``, ``macro_f1``, ``auroc`` (classification), ``mae``,
            ``pearson_r`` (regression), ``micro_f1``, ``macro_f1`` (multilabel) or ``loss``.
    """

    example = "See configs/har_phone_watch.yaml."

    task: Literal["supervised"] = "supervised"
    data: DataConfig
    model: ModelConfig
    optim: SupervisedOptim = field(default_factory=SupervisedOptim)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_monitor(self.monitor, list(HIGHER_IS_BETTER))


def _check_monitor(monitor: str, valid: Sequence[str]) -> None:
    """An unknown ``monitor`` fails when the config is read, not after the first epoch."""
    if monitor not in valid:
        raise unknown_name_error("monitor", monitor, valid)


@dataclass(frozen=True, kw_only=True)
class ContextTrainConfig(RunConfig):
    """A context run (``task: context``): each utterance classified from its video.

    The data set's examples are utterances grouped into videos (``groups()``; MOSI);
    validation is whole videos carved from train.  ``data.batch_size`` counts videos.

    Args:
        data: :class:`DataConfig`.
        model: the utterance-level :class:`~polymodal.models.config.ModelConfig` (a
            feature-level fusion).
        context: the sequence model over each video (:class:`ContextConfig`).
        optim: :class:`ContextOptim`.
        monitor: ``accuracy``, ``macro_f1`` or ``loss`` (per utterance).
    """

    example = "See configs/mosi_context.yaml."

    task: Literal["context"] = "context"
    data: DataConfig
    model: ModelConfig
    context: ContextConfig = field(default_factory=ContextConfig)
    optim: ContextOptim = field(default_factory=ContextOptim)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.monitor not in CONTEXT_MONITORS:
            raise ValueError(
                f"monitor={self.monitor!r} is not computed per utterance; choose one of "
                f"{list(CONTEXT_MONITORS)}."
            )


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> RunConfig:
    """Read any run's YAML, apply ``key=value`` ``overrides``, and return its task's config.

    ``name`` defaults to the file's stem (``configs/mosi.yaml`` -> ``mosi``); ``task``
    defaults to ``supervised``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown task or key, a wrong type, a bad value, a malformed override.
    """
    from polymodal.training.tasks import task_config

    d = read_config_file(path, overrides)
    try:
        return task_config(str(d.get("task", "supervised"))).from_dict(d)
    except (ValueError, TypeError) as e:
        # the same error, saying which file it is about
        raise _in_file(e, f"Config file {str(path)!r}: {e}") from None


def _in_file(e: Exception, message: str) -> Exception:
    try:
        return type(e)(message)
    except TypeError:  # an error type with another signature
        return ValueError(message)


__all__ = [
    "BALANCE_METHODS",
    "RESUME_FREE_KEYS",
    "BalanceConfig",
    "ContextOptim",
    "ContextTrainConfig",
    "DataConfig",
    "DistributedConfig",
    "OptimConfig",
    "PerturbConfig",
    "RunConfig",
    "SupervisedOptim",
    "TrainConfig",
    "load_config",
    "resume_differences",
]
