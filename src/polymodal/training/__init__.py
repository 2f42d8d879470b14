"""Training: configs, the training loop, checkpoints, metrics, schedules and seeding.

``train(load_config("configs/mosi.yaml", ["optim.lr=3e-4"]))`` runs a whole experiment;
:class:`Trainer` trains a model you built yourself on data sets you built yourself.
"""

from polymodal.training.checkpoint import (
    Checkpoint,
    check_weights,
    load_checkpoint,
    save_checkpoint,
)
from polymodal.training.config import DataConfig, OptimConfig, TrainConfig, load_config
from polymodal.training.metrics import (
    accuracy,
    auroc,
    compute_metrics,
    macro_f1,
    mae,
    multilabel_f1,
    pearson_r,
)
from polymodal.training.schedule import WarmupCosine, build_scheduler
from polymodal.training.seed import seed_everything
from polymodal.training.trainer import (
    Predictions,
    Trainer,
    TrainResult,
    build_datasets,
    evaluate,
    predict,
    train,
)

__all__ = [
    "Checkpoint",
    "DataConfig",
    "OptimConfig",
    "Predictions",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "WarmupCosine",
    "accuracy",
    "auroc",
    "build_datasets",
    "build_scheduler",
    "check_weights",
    "compute_metrics",
    "evaluate",
    "load_checkpoint",
    "load_config",
    "macro_f1",
    "mae",
    "multilabel_f1",
    "pearson_r",
    "predict",
    "save_checkpoint",
    "seed_everything",
    "train",
]
