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

Every stage announces itself as it starts (``announce``) and its result as it ends
(``on_result``); the transcripts are encoded first, once, with a progress report
(:func:`encode_transcripts`), so the first run does not sit silent for a minute.  Their
MiniLM outputs are also cached on disk (:mod:`polymodal.encoders.disk_cache`): a second
demo encodes nothing.
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


def encode_transcripts(root: str | None = None, device: str = "cpu", batch_size: int = 64) -> int:
    """Run the demo's frozen MiniLM once over every MOSI transcript (train and test), with a
    progress report, so the runs that read transcripts find their outputs cached (in memory
    for this process, on disk for the next); returns the number of distinct transcripts."""
    import torch

    from polymodal.data.datasets import load_dataset
    from polymodal.data.sample import ModalityBatch
    from polymodal.encoders import build_encoder
    from polymodal.progress import progress

    texts: list[str] = []
    for split in ("train", "test"):
        ds = load_dataset("mosi", split=split, root=root, modalities=["transcript"])
        texts += [row.text for row in ds.text_rows("transcript")]
    texts = list(dict.fromkeys(texts))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = ds.schema["transcript"]
    encoder = build_encoder(
        ENCODERS["transcript"]["name"], spec, **ENCODERS["transcript"]["params"]
    )
    encoder.to(device)
    starts = range(0, len(texts), batch_size)
    for start in progress(starts, desc="encoding transcripts (frozen MiniLM)", unit="batches"):
        chunk = texts[start : start + batch_size]
        encoder(ModalityBatch(chunk, torch.ones(len(chunk), dtype=torch.bool, device=device)))
    return len(texts)


def run_demo(
    seed: int = 0,
    epochs: int = 20,
    root: str | None = None,
    output_dir: str | Path | None = None,
    device: str = "cpu",
    on_result: Callable[[DemoRun], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> list[DemoRun]:
    """Train and evaluate every model of :data:`PLAN`; returns one :class:`DemoRun` each.

    ``announce`` is called with a line as each stage starts, ``on_result`` with each row
    as its run ends.
    """
    say = announce if announce is not None else (lambda line: None)
    rows: list[DemoRun] = []
    if any("transcript" in mods for _, mods, _ in PLAN):
        say("encoding the transcripts with frozen MiniLM (once; cached for every run) ...")
        t0 = time.perf_counter()
        n = encode_transcripts(root, device)
        say(f"  encoded {n} transcripts ({time.perf_counter() - t0:.0f} s)")
    with tempfile.TemporaryDirectory(prefix="polymodal-demo-") as tmp:
        base = Path(output_dir) if output_dir is not None else Path(tmp)
        for number, (method, mods, fusion) in enumerate(PLAN, 1):
            run_dir = base / f"{fusion}_{'_'.join(mods)}"
            cfg = demo_config(mods, fusion, seed, epochs, str(run_dir), root, device)
            say(
                f"training {method} ({number}/{len(PLAN)}: {'+'.join(mods)}, up to {epochs} epochs) ..."
            )
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
