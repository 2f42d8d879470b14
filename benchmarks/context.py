"""Context across utterances on CMU-MOSI: utterance-level models vs the same models with a
bidirectional GRU / transformer over each video's utterances (ContextModel).

Modalities: the transcript through frozen all-MiniLM-L6-v2 (384-d, cached in-process) and
the released openSMILE audio features (MLP).  The released 100-d text and video features are
left out: they come from networks trained on the training videos and leak their labels.

For each seed, validation = a fifth of the training videos (group_split, the same videos as
the utterance-level trainer picks for that seed); early stopping and model selection read
validation only; MOSI's test split is evaluated once with the best weights.  Metrics are per
utterance, so the rows compare directly.

* ``<fusion>`` (no context): the utterance-level model, ``task: supervised`` (the
  configuration of benchmarks/baselines.py: ``early_transcript_audio``, and
  ``transcript`` for the transcript alone);
* ``<fusion>+gru`` / ``<fusion>+transformer``: ``task: context``
  (``configs/mosi_context.yaml``): ContextModel over the same utterance model.  Both
  train on the library's one loop.

Setups are ``modalities:fusion``, modalities joined by ``+``.  Every transcript is encoded
by MiniLM once before the runs (the cache is shared), so ``seconds`` is training time.

``--finetune N`` fine-tunes MiniLM's last N blocks instead (no cache: every step runs the
encoder), the encoder at ``--encoder-lr-scale`` times ``optim.lr`` (``optim.lr_scale``) and,
with ``--layer-decay``, each block below the top at a further factor (``optim.layer_decay``);
``configs/mosi_context_finetune.yaml`` is this with the chosen setting:

    POLYMODAL_DATA=../shared/data python benchmarks/context.py --contexts gru \\
        --setups transcript:early --finetune 2 --encoder-lr-scale 0.1 --epochs 8

    POLYMODAL_DATA=../shared/data python benchmarks/context.py               # 3 seeds
    POLYMODAL_DATA=../shared/data python benchmarks/context.py --seeds 1 \
        --setups transcript+audio:early

``--ensemble K`` also trains K - 1 more models per seed (seeds ``seed + 100 k``), all with
``data.split_seed = seed``, so they hold out the same validation videos as that seed's
single model (member 0); rows ``<method> ensembleK`` give the ensemble (the mean of the
members' class probabilities) on validation and test (``seconds``: K runs).

Writes benchmarks/results/context.{json,md} (with ``--finetune``: context_finetune.{json,md});
records of setups not re-run are kept.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ENSEMBLE_STRIDE,
    ensemble_scores,
    merge_records,
    previous_records,
    print_table,
    seed_record,
    write_results,
)
from polymodal.apps.demo import demo_config
from polymodal.data.datasets import load_dataset
from polymodal.encoders import build_encoder
from polymodal.models.context import CONTEXTS
from polymodal.training import RunConfig, TrainConfig, load_config, train

REPO = Path(__file__).resolve().parents[1]
SETUPS = ("transcript+audio:early", "transcript+audio:gmu", "transcript:early")
FUSION_PARAMS: dict[str, dict[str, Any]] = {
    "early": {"hidden_dim": 64, "dropout": 0.5},
    "gmu": {"hidden_dim": 64, "dropout": 0.5},
    "tensor": {"hidden_dim": 64, "dropout": 0.5},
}


def parse_setup(text: str) -> tuple[tuple[str, ...], str]:
    """``"transcript+audio:early"`` -> ``(("transcript", "audio"), "early")``."""
    mods, _, fusion = text.partition(":")
    modalities = tuple(m for m in mods.split("+") if m)
    if fusion not in FUSION_PARAMS or not modalities:
        raise ValueError(
            f"--setups entries must be 'modality+modality:fusion' with fusion in "
            f"{sorted(FUSION_PARAMS)}; got {text!r}."
        )
    return modalities, fusion


def utterance_config(
    modalities: tuple[str, ...], fusion: str, seed: int, epochs: int, out: str
) -> TrainConfig:
    """The utterance-level run: the demo's MOSI setup (as in benchmarks/baselines.py) with
    ``fusion``."""
    return demo_config(modalities, "early", seed, epochs, out).replace(
        **{"model.fusion": {"name": fusion, "params": FUSION_PARAMS[fusion]}}
    )


def context_config(
    modalities: tuple[str, ...],
    fusion: str,
    context: str,
    seed: int,
    epochs: int,
    out: str,
    args: argparse.Namespace,
) -> RunConfig:
    """``configs/mosi_context.yaml`` around the same utterance model, with ``context``."""
    utterance = utterance_config(modalities, fusion, seed, epochs, out)
    if args.finetune is not None:
        utterance = finetuned(utterance, "utterance_model.", args)
    return load_config(REPO / "configs" / "mosi_context.yaml").replace(
        **{
            "model": utterance.model.to_dict(),
            "optim.lr_scale": utterance.optim.lr_scale,
            "optim.layer_decay": utterance.optim.layer_decay,
            "data.options.modalities": list(modalities),
            "data.batch_size": args.batch_videos,
            "context.context": context,
            "context.hidden_dim": args.hidden,
            "context.num_layers": 1,
            "context.dropout": args.dropout,
            "optim.epochs": epochs,
            "seed": seed,
            "device": "cpu",
            "progress": False,
            "output_dir": out,
        }
    )


def finetuned(cfg: TrainConfig, path: str, args: argparse.Namespace) -> TrainConfig:
    """``cfg`` with MiniLM's last ``args.finetune`` blocks trained, the transcript encoder
    (at ``<path>encoders.transcript``) at ``args.encoder_lr_scale`` times the rate."""
    params = {"trainable_layers": args.finetune, "cache": False}
    return cfg.replace(
        **{
            "model.encoders.transcript.params": params,
            "optim.lr_scale": {f"{path}encoders.transcript": args.encoder_lr_scale},
            "optim.layer_decay": args.layer_decay,
        }
    )


def warm_minilm(modalities: tuple[str, ...]) -> None:
    """Encode every transcript once; the frozen MiniLMs of the runs share the cache."""
    if "transcript" not in modalities:
        return
    for split in ("train", "test"):
        ds = load_dataset("mosi", split=split, modalities=["transcript"])
        encoder = build_encoder("minilm", ds.schema["transcript"])
        with torch.no_grad():
            for start in range(0, len(ds), 64):
                encoder(ds.batch(range(start, min(len(ds), start + 64)))["transcript"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), type=str)
    ap.add_argument("--contexts", nargs="+", default=["none", "gru", "transformer"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--batch-videos", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--finetune", type=int, default=None, help="train MiniLM's last N blocks")
    ap.add_argument("--encoder-lr-scale", type=float, default=0.1)
    ap.add_argument("--layer-decay", type=float, default=None)
    ap.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="K",
        help="also a seed ensemble of K models per seed, sharing its validation videos",
    )
    args = ap.parse_args(argv)
    if args.ensemble < 1:
        ap.error(f"--ensemble must be >= 1 (1: no ensemble), got {args.ensemble}")
    if not os.environ.get("POLYMODAL_DATA"):
        os.environ["POLYMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    torch.set_num_threads(args.threads)

    setups = [parse_setup(s) for s in args.setups]
    bad = [c for c in args.contexts if c not in ("none", *CONTEXTS)]
    if bad:
        raise ValueError(f"--contexts must be among none, {', '.join(CONTEXTS)}; got {bad}.")
    records: list[dict[str, Any]] = []
    warmed: set[tuple[str, ...]] = set()
    for modalities, fusion in setups:
        if modalities not in warmed and args.finetune is None:
            t0 = time.perf_counter()
            warm_minilm(modalities)
            warmed.add(modalities)
            print(f"MiniLM cache warmed in {time.perf_counter() - t0:.0f} s", flush=True)
        name = "+".join(modalities)
        for context in args.contexts:
            method = f"{name}:{fusion}" + ("" if context == "none" else f"+{context}")
            if args.finetune is not None:
                method += f" ft{args.finetune}"
            keys = ("accuracy", "macro_f1")
            scores: dict[str, list[float]] = {k: [] for k in keys}
            ens: dict[str, list[float]] = {k: [] for k in keys}
            secs: list[float] = []
            val_accs: list[float] = []
            ens_val: list[float] = []
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as tmp:
                    members = []
                    for member in range(args.ensemble):
                        out = f"{tmp}/m{member}"
                        member_seed = seed + ENSEMBLE_STRIDE * member
                        if context == "none":
                            cfg: RunConfig = utterance_config(
                                modalities, fusion, member_seed, args.epochs, out
                            )
                            if args.finetune is not None:
                                cfg = finetuned(cfg, "", args)
                        else:
                            cfg = context_config(
                                modalities, fusion, context, member_seed, args.epochs, out, args
                            )
                        if args.ensemble > 1:  # one validation carve for every member
                            cfg = cfg.replace(**{"data.split_seed": seed})
                        t0 = time.perf_counter()
                        members.append(train(cfg))
                        if member == 0:
                            secs.append(time.perf_counter() - t0)
                    res = members[0]  # the single model of this seed
                    assert res.test is not None and res.best_val is not None
                    val_accs.append(res.best_val["accuracy"])
                    for key in keys:
                        scores[key].append(float(res.test[key]))
                    print(
                        f"{method:34} seed {seed}: test acc {res.test['accuracy']:.4f} "
                        f"f1 {res.test['macro_f1']:.4f} val acc {val_accs[-1]:.4f} "
                        f"epochs {res.epochs_run} ({secs[-1]:.0f} s)",
                        flush=True,
                    )
                    if args.ensemble > 1:
                        data = cfg.data  # type: ignore[attr-defined]  # supervised or context
                        both = ensemble_scores([m.run_dir for m in members], data, seed)
                        ens_val.append(both["val"]["accuracy"])
                        for key in keys:
                            ens[key].append(both["test"][key])
                        print(
                            f"{method:34} seed {seed}: ensemble of {args.ensemble}: test acc "
                            f"{both['test']['accuracy']:.4f} f1 {both['test']['macro_f1']:.4f} "
                            f"val acc {ens_val[-1]:.4f}",
                            flush=True,
                        )
            rows = [(method, scores, val_accs, 1)]
            if args.ensemble > 1:
                rows.append((f"{method} ensemble{args.ensemble}", ens, ens_val, args.ensemble))
            for row_method, values, vals_val, runs in rows:
                for metric, vals in values.items():
                    records.append(
                        seed_record(
                            "context",
                            "mosi",
                            row_method,
                            metric,
                            vals,
                            seconds=runs * statistics.mean(secs),
                            modalities=name,
                            fusion=fusion,
                            context=context,
                            val_accuracy=statistics.mean(vals_val),
                        )
                    )
    stem = "context" if args.finetune is None else "context_finetune"
    # Keep the records of setups not re-run here.
    records = merge_records(previous_records(stem, args.results_dir), records)
    print_table(records)
    cmd = "POLYMODAL_DATA=../shared/data python benchmarks/context.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    tuned = (
        ""
        if args.finetune is None
        else (
            " MOSI's labels here are the release's 0/1 only (no sentiment scores), so one "
            "binary convention; negative vs positive without the zeros cannot be formed."
            f" Rows marked ftN fine-tune MiniLM's last N blocks (--finetune {args.finetune}) at "
            f"{args.encoder_lr_scale} x the learning rate (optim.lr_scale), layer decay "
            f"{args.layer_decay} (optim.layer_decay), {args.epochs} epochs at most."
        )
    )
    write_results(
        stem,
        records,
        title="Context across utterances (MOSI): utterance-level vs ContextModel",
        notes=(
            "Test metrics per utterance on MOSI's test split (752 utterances, 31 videos): mean "
            "and std over seeds. transcript = all-MiniLM-L6-v2, "
            + (
                "frozen (transcripts encoded once before the runs)"
                if args.finetune is None
                else "fine-tuned (ftN rows)"
            )
            + "; audio = openSMILE features (MLP). Rows without a context are the utterance-level model (task: supervised) trained by "
            "the library loop; `+gru` / `+transformer` (task: context) wrap the same utterance model in "
            f"ContextModel (hidden {args.hidden}, 1 layer, dropout {args.dropout}, "
            f"{args.batch_videos} videos per batch), trained jointly. Validation: a fifth of "
            "the training videos, the same videos for every method at a given seed. "
            "seconds: mean wall time of one run on this machine; val_accuracy: mean best "
            "validation accuracy." + tuned
        ),
        command=cmd.strip(),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
