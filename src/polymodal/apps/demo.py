"""``polymodal demo``: multimodal sentiment on CMU-MOSI, each modality alone and fused.

Trains seven models on the speaker-independent MOSI split (1,447 train / 752 test
utterances; validation = a fifth of the training *videos*, carved by group) and reports
test accuracy and macro-F1 of each:

* ``text``: the transcript through the pretrained all-MiniLM-L6-v2 (frozen, native 384-d;
  its outputs are cached, so the three runs that read the transcript encode each sentence
  once);
* ``audio``: the released 73-d openSMILE features through an MLP;
* ``video``: the released 100-d 3D-CNN features through an MLP;
* ``early``: feature-level fusion of the three (concatenation + MLP, presence flags);
* ``late``: decision-level fusion (one head per modality, mask-aware mean of logits);
* both fusions again without the video features, whose training-split values leak the
  labels (see the README), to show what fusion gives on the modalities that generalise.

Fused models train with modality dropout, which keeps them from leaning on one modality.
Model selection and early stopping read the validation split only; the test split is
evaluated once per model with its best weights.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.training import TrainConfig, TrainResult, train

MODALITIES = ("transcript", "audio", "video")

_FEATURE_ENCODER = {"name": "mlp", "params": {"dim": 64, "dropout": 0.3, "running_stats": True}}
ENCODERS: dict[str, dict[str, Any]] = {
    "transcript": {"name": "minilm", "params": {}},
    "audio": _FEATURE_ENCODER,
    "video": _FEATURE_ENCODER,
}


@dataclass(frozen=True)
class DemoRun:
    """One row of the demo's table."""

    method: str
    modalities: tuple[str, ...]
    fusion: str
    val_accuracy: float
    test_accuracy: float
    test_macro_f1: float
    epochs: int
    seconds: float


def demo_config(
    modalities: tuple[str, ...],
    fusion: str,
    seed: int = 0,
    epochs: int = 20,
    output_dir: str | None = None,
    root: str | None = None,
    device: str = "cpu",
) -> TrainConfig:
    """The :class:`TrainConfig` of one demo run (also a template for your own MOSI runs)."""
    fusion_params: dict[str, Any] = (
        {"hidden_dim": 64, "dropout": 0.5} if fusion == "early" else {"combine": "mean"}
    )
    dropout = {m: 0.3 for m in modalities} if len(modalities) > 1 else {}
    cfg: dict[str, Any] = {
        "name": f"demo_{fusion}_{'_'.join(modalities)}",
        "seed": seed,
        "device": device,
        "data": {
            "dataset": "mosi",
            "root": root,
            "options": {"modalities": list(modalities)},
            "val_fraction": 0.2,
            "batch_size": 32,
        },
        "model": {
            "encoders": {m: copy.deepcopy(ENCODERS[m]) for m in modalities},
            "fusion": {"name": fusion, "params": fusion_params},
            "modality_dropout": dropout,
        },
        "optim": {"lr": 1e-3, "weight_decay": 0.05, "epochs": epochs, "warmup_ratio": 0.05},
        "monitor": "accuracy",
        "patience": 5,
        "progress": False,
        "output_dir": output_dir,
    }
    return TrainConfig.from_dict(cfg)


PLAN: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("text (MiniLM)", ("transcript",), "early"),
    ("audio", ("audio",), "early"),
    ("video", ("video",), "early"),
    ("early fusion", MODALITIES, "early"),
    ("late fusion", MODALITIES, "late"),
    ("early, no video", ("transcript", "audio"), "early"),
    ("late, no video", ("transcript", "audio"), "late"),
)


def run_demo(
    seed: int = 0,
    epochs: int = 20,
    root: str | None = None,
    output_dir: str | Path | None = None,
    device: str = "cpu",
    on_result: Callable[[DemoRun], None] | None = None,
) -> list[DemoRun]:
    """Train and evaluate every model of :data:`PLAN`; returns one :class:`DemoRun` each."""
    rows: list[DemoRun] = []
    with tempfile.TemporaryDirectory(prefix="polymodal-demo-") as tmp:
        base = Path(output_dir) if output_dir is not None else Path(tmp)
        for method, mods, fusion in PLAN:
            run_dir = base / f"{fusion}_{'_'.join(mods)}"
            cfg = demo_config(mods, fusion, seed, epochs, str(run_dir), root, device)
            t0 = time.perf_counter()
            result: TrainResult = train(cfg)
            test = result.test or {}
            row = DemoRun(
                method=method,
                modalities=mods,
                fusion=fusion,
                val_accuracy=(result.best_val or {}).get("accuracy", float("nan")),
                test_accuracy=test.get("accuracy", float("nan")),
                test_macro_f1=test.get("macro_f1", float("nan")),
                epochs=result.epochs_run,
                seconds=time.perf_counter() - t0,
            )
            rows.append(row)
            if on_result is not None:
                on_result(row)
    return rows


def format_table(rows: list[DemoRun]) -> str:
    """A plain-text table of demo results."""
    head = (
        f"{'model':<15} {'modalities':<24} {'val acc':>8} {'test acc':>9} {'test F1':>8} {'s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.method:<16} {'+'.join(r.modalities):<24} {100 * r.val_accuracy:>7.1f}% "
            f"{100 * r.test_accuracy:>8.1f}% {100 * r.test_macro_f1:>7.1f}% {r.seconds:>6.1f}"
        )
    return "\n".join(lines)
