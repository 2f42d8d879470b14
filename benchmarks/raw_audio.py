"""Raw-audio benchmark (issue 13 item 8): encoders that learn from speech in a few epochs.

RAVDESS speech (8 emotions), actor-held-out: test = actors 21-24, validation carved by
actor from the 20 training actors by the library (:func:`polymodal.training.data.
build_datasets`, a fifth of the actors drawn by the seed), the test split read once at
the end.  Compared, on the same split per seed:

* ``audio_cnn`` trained from scratch by the library's trainer (:func:`polymodal.training.
  train`) for a few epochs, with its defaults (``freq_pool=mean, pool=mean,
  top_db=None``) and nothing cached, and with the options of issue 13 (mel rows flattened
  into each frame, mean+std statistics pooling, an 80 dB floor below each clip's peak),
  each clip's log-mel cached and the data set's decoded clips cached;
* a reference: MFCC mean and std per clip (the library's
  :class:`~polymodal.layers.melspec.LogMelSpectrogram`, 40 bands, then a DCT-II to 20
  coefficients), standardised on the training actors, and a multinomial logistic regression
  (torch, L-BFGS) whose L2 strength is chosen on the validation actors.

Also measured: the seconds a pass over the training clips spends decoding and computing
log-mel, uncached and with both caches warm, and each run's training seconds per epoch.

    POLYMODAL_DATA=../shared/data python benchmarks/raw_audio.py              # the record
    POLYMODAL_DATA=../shared/data python benchmarks/raw_audio.py --quick      # smoke run

Writes benchmarks/results/raw_audio.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from _common import print_table, record, seed_record, write_results
from polymodal.data import collate
from polymodal.data.dataset import MultimodalDataset
from polymodal.encoders import build_encoder
from polymodal.encoders.audio import AudioEncoder
from polymodal.layers.melspec import LogMelSpectrogram
from polymodal.metrics import accuracy, macro_f1
from polymodal.training import train
from polymodal.training.config import TrainConfig
from polymodal.training.data import build_datasets

REPO = Path(__file__).resolve().parents[1]
NAME = "raw_audio"
DATASET = "ravdess_speech"

#: audio_cnn's parameters per variant, and whether the data set caches decoded clips.
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "audio_cnn (defaults; nothing cached)": (
        {"freq_pool": "mean", "pool": "mean", "top_db": None, "cache_mb": 0},
        False,
    ),
    "audio_cnn (init=kaiming; nothing cached)": (
        {"freq_pool": "mean", "pool": "mean", "top_db": None, "cache_mb": 0, "init": "kaiming"},
        False,
    ),
    "audio_cnn (freq_pool=flatten, pool=stats, top_db=80; cached)": (
        {"freq_pool": "flatten", "pool": "stats", "top_db": 80.0},
        True,
    ),
}
L2_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def cnn_config(
    params: dict[str, Any], cache: bool, seed: int, epochs: int, out: str
) -> TrainConfig:
    """The run: audio_cnn on RAVDESS, an early-fusion MLP head, like configs/ravdess_speech."""
    return TrainConfig.from_dict(
        {
            "name": NAME,
            "seed": seed,
            "output_dir": out,
            "progress": False,
            "device": "cpu",
            "data": {
                "dataset": DATASET,
                "options": {"cache": cache},
                "train_split": "train",
                "test_split": "test",
                "val_fraction": 0.2,
                "batch_size": 32,
            },
            "model": {
                "encoders": {"audio": {"name": "audio_cnn", "params": {"dim": 128, **params}}},
                "fusion": {"name": "early", "params": {"hidden_dim": 128, "dropout": 0.2}},
                "head": {"hidden_dim": 0, "dropout": 0.0},
            },
            "optim": {
                "lr": 2e-3,
                "weight_decay": 0.05,
                "epochs": epochs,
                "warmup_ratio": 0.1,
                "grad_clip": 1.0,
            },
            "monitor": "accuracy",
            "patience": epochs,
        }
    )


def run_cnn(params: dict[str, Any], cache: bool, seed: int, epochs: int) -> dict[str, Any]:
    """Train one variant for one seed; its test metrics and seconds per epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        res = train(cnn_config(params, cache, seed, epochs, tmp))
    if res.test is None or res.best_val is None:
        raise RuntimeError("the run reported no test or validation metrics")
    secs = [float(row["seconds"]) for row in res.history]
    return {
        "accuracy": float(res.test["accuracy"]),
        "macro_f1": float(res.test["macro_f1"]),
        "val_accuracy": float(res.best_val["accuracy"]),
        "best_epoch": res.best_epoch,
        "epoch1_seconds": secs[0],
        "later_epoch_seconds": statistics.mean(secs[1:]) if len(secs) > 1 else secs[0],
    }


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II basis: log-mel (.., n_in) @ it -> MFCC (.., n_out).

    Shape:
        output: (n_in, n_out)
    """
    k = torch.arange(n_out, dtype=torch.float64)[None, :]
    n = torch.arange(n_in, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


def mfcc_stats(
    dataset: MultimodalDataset, n_mfcc: int = 20, n_mels: int = 40, batch: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip's MFCC mean and std over its frames, and its target.

    Shape:
        output: (N, 2 * n_mfcc) features, (N,) long targets
    """
    spec = dataset.schema.modalities[0]
    mel = LogMelSpectrogram(float(spec.sample_rate or 16000), n_mels=n_mels, top_db=80.0)
    dct = dct_matrix(n_mels, n_mfcc)
    feats, targets = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch):
            samples = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
            b = collate(samples, dataset.schema)[spec.name]
            assert b.lengths is not None
            s = mel(b.values, b.lengths)
            mfcc = s.features @ dct  # (B, F, n_mfcc)
            m = s.mask.unsqueeze(-1).float()
            count = m.sum(1).clamp_min(1.0)
            mean = (mfcc * m).sum(1) / count
            std = (((mfcc - mean[:, None]).square() * m).sum(1) / count).sqrt()
            feats.append(torch.cat([mean, std], 1))
            targets += [int(x.target) for x in samples]
    return torch.cat(feats), torch.tensor(targets)


def fit_logreg(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression, mean cross-entropy + ``l2 * |W|^2 / 2``, by L-BFGS."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[1], n_classes)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x), y) + 0.5 * l2 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def mfcc_reference(seed: int) -> dict[str, Any]:
    """The MFCC + logistic regression reference on the seed's split."""
    cfg = cnn_config({}, True, seed, 1, "unused")
    train_ds, val_ds, test_ds = build_datasets(cfg.data, seed)
    assert test_ds is not None
    n_classes = train_ds.schema.target.num_classes if train_ds.schema.target else 8
    (xtr, ytr), (xva, yva) = mfcc_stats(train_ds), mfcc_stats(val_ds)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    scores = {}
    for l2 in L2_GRID:
        lin = fit_logreg(xtr, ytr, n_classes, l2)
        with torch.no_grad():
            scores[l2] = accuracy(lin(xva).argmax(1), yva)
    best = max(L2_GRID, key=lambda c: (scores[c], c))  # ties: the stronger penalty
    lin = fit_logreg(xtr, ytr, n_classes, best)
    xte, yte = mfcc_stats(test_ds)  # read once, at the end
    with torch.no_grad():
        pred = lin((xte - mu) / sd).argmax(1)
    return {
        "accuracy": accuracy(pred, yte),
        "macro_f1": macro_f1(pred, yte, n_classes),
        "val_accuracy": scores[best],
        "l2": best,
    }


def frontend_seconds(seed: int, passes: int = 2) -> list[float]:
    """Seconds of decode + log-mel over the training clips, per pass, with both caches on.

    Pass 1 fills the data set's clip cache and the encoder's log-mel cache; later passes
    read them.  A pass without caches costs what pass 1 does (it decodes and computes all).
    """
    cfg = cnn_config({}, True, seed, 1, "unused")
    train_ds, _, _ = build_datasets(cfg.data, seed)
    spec = train_ds.schema.modalities[0]
    enc = build_encoder("audio_cnn", spec=spec)
    assert isinstance(enc, AudioEncoder)
    out = []
    with torch.no_grad():
        for _ in range(passes):
            t0 = time.perf_counter()
            for start in range(0, len(train_ds), 32):
                idx = range(start, min(start + 32, len(train_ds)))
                b = collate([train_ds[i] for i in idx], train_ds.schema)[spec.name]
                assert b.lengths is not None
                enc.cached_features(b.values, b.lengths)
            out.append(time.perf_counter() - t0)
    return out


def summarise(method: str, runs: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    rows = []
    for metric in ("accuracy", "macro_f1"):
        values = [r[metric] for r in runs]
        rows.append(
            seed_record(
                NAME,
                DATASET,
                method,
                metric,
                values,
                per_seed=[round(v, 4) for v in values],
                val_accuracy=round(statistics.mean(r["val_accuracy"] for r in runs), 4),
                **extra,
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 epoch: a smoke run")
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    records: list[dict[str, Any]] = []
    passes = frontend_seconds(0)
    print(f"decode + log-mel per pass over the training clips: {passes}", flush=True)
    records.append(record(NAME, DATASET, "decode + log-mel, uncached", "seconds", passes[0]))
    records.append(record(NAME, DATASET, "decode + log-mel, cached", "seconds", passes[-1]))
    refs = []
    for seed in range(args.seeds):
        refs.append(mfcc_reference(seed))
        print(f"seed {seed} MFCC reference: {refs[-1]}", flush=True)
    records += summarise("MFCC mean/std + logistic regression", refs)
    for method, (params, cache) in VARIANTS.items():
        runs = []
        for seed in range(args.seeds):
            runs.append(run_cnn(params, cache, seed, args.epochs))
            print(f"seed {seed} {method}: {runs[-1]}", flush=True)
        records += summarise(
            method,
            runs,
            epochs=args.epochs,
            best_epoch=[r["best_epoch"] for r in runs],
            epoch1_seconds=round(statistics.mean(r["epoch1_seconds"] for r in runs), 1),
            later_epoch_seconds=round(statistics.mean(r["later_epoch_seconds"] for r in runs), 1),
        )
    print_table(records)
    total = time.perf_counter() - t_start
    notes = (
        f"{args.seeds} seed(s), {args.epochs} epochs per audio_cnn run, 1 CPU thread; the "
        f"whole benchmark took {total / 60:.1f} min. Split: test = actors 21-24 (240 clips), "
        "validation = a fifth of actors 1-20 drawn by the seed (the library's carve), "
        "train = the rest. audio_cnn is trained by the library's trainer (early-fusion "
        "MLP head, AdamW lr 2e-3, weight decay 0.05, batch 32), test metrics at the best "
        "validation epoch. The reference's L2 strength is chosen on the validation actors "
        f"from {list(L2_GRID)}. epoch1_seconds / later_epoch_seconds: the trainer's wall "
        "time of the first epoch and the mean of the later ones (training + validation); "
        "'decode + log-mel' rows: one pass over the training clips, uncached (first pass) "
        "and with the data set's clip cache and audio_cnn's log-mel cache warm. The machine's "
        "2 cores are shared, so epoch seconds of runs at different times also reflect its "
        "load; the 'decode + log-mel' rows, one after the other, are the cleaner comparison."
    )
    cmd = "POLYMODAL_DATA=../shared/data python benchmarks/raw_audio.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_results(
        NAME,
        records,
        title="Raw audio: audio_cnn from scratch on RAVDESS speech vs an MFCC reference",
        notes=notes,
        command=cmd.strip(),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
