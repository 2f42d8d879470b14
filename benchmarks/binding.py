"""Binding benchmark: text and audio made comparable through a shared image space.

ImageBind-style binding (Girdhar et al. 2023): one joint space with anchor = image, trained
by the library (``polymodal.training.train`` on a ``task: contrastive`` config) on several
(image, X) pair sets at once; text and audio never meet in training, yet are compared at
test time.  Everything but the measurement is the library's: the setup is
``configs/binding.yaml`` (encoders, projections, pair sets, optimiser), each pairing is a
``cfg.replace`` of it, features come from ``pair_features`` and the feature cache, and the
evaluation reloads each run's checkpoint (``load_joint_checkpoint``).

* image: frozen EfficientNet-Lite0 pooled features (1280-d).  Flickr8k photos at 224 px
  (the cached features of ``configs/flickr8k.yaml`` and ``benchmarks/retrieval.py``); MNIST
  digits upsampled to 64 px.
* text: frozen MiniLM (384-d).
* audio: ``audio_logmel`` (no pretrained speech-content encoder ships offline; Resemblyzer is
  a speaker embedding): a fixed log-mel vector (40 bands, 25/10 ms, silence trimmed,
  resampled to 32 frames, flattened, plus each band's mean and std over time: 1,360-d),
  standardised by the projection's ``input_norm: batch`` and an MLP projection on top.

Pairings (each a separate run of ``configs/binding.yaml`` with some of its pair sets):

* ``flickr8k`` (reference): Flickr8k image-text pairs only.
* ``A: flickr8k + av_digits``: Flickr8k image-text pairs + av_digits image-audio pairs
  (FSDD spoken digits of the 4 training speakers, each with 3 MNIST train images of its
  digit).
* ``B: mnist captions + av_digits``: image-text pairs of the ``mnist`` data set (2,000
  *other* MNIST train images, the last 200 of each digit outside av_digits' pairs, with
  5 label captions such as "a handwritten seven.") + the av_digits pairs.
* ``C: flickr8k + mnist captions + av_digits``: all three pair sets.

Evaluation, with no text-audio pair anywhere: on the av_digits test speakers (theo,
yweweler; 1,000 recordings, each with an MNIST *test* image) zero-shot spoken-digit
classification by the nearest text prompt ("a spoken digit seven.", 3 templates),
text->audio retrieval (30 prompt queries, relevant = recordings of that digit; R@K and
mAP), and references: audio->image (the bound pair; R@1 with relevant = same digit),
zero-shot MNIST test images by text prompt (text->image), Flickr8k test i2t/t2i R@1
(1,000 images vs 5,000 captions) and chance (most frequent class).  Flickr8k's val split
drives early stopping where a pairing has Flickr8k; the test speakers and test images
are used only here.

    POLYMODAL_DATA=../shared/data python benchmarks/binding.py            # 3 seeds
    POLYMODAL_DATA=../shared/data python benchmarks/binding.py --seeds 1  # the recorded run
    POLYMODAL_DATA=../shared/data python benchmarks/binding.py --seeds 1 --fast  # smoke
    POLYMODAL_DATA=../shared/data python benchmarks/binding.py --render   # notes only

A last row trains a supervised classifier of the library (``task: supervised`` on av_digits'
audio alone: ``audio_logmel``, an ``early`` fusion of one modality and a head, i.e. an MLP)
with digit labels on the same audio features: a supervised reference for the audio side.

Writes benchmarks/results/binding.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, print_table, record, write_results
from polymodal.data.datasets import load_dataset
from polymodal.joint import (
    JointEmbeddingModel,
    evaluate_pairs,
    load_joint_checkpoint,
    pair_features,
)
from polymodal.joint.train import JointTrainConfig
from polymodal.retrieval.metrics import retrieval_metrics
from polymodal.retrieval.zeroshot import (
    AUDIO_DIGIT_TEMPLATES,
    DIGIT_NAMES,
    IMAGE_DIGIT_TEMPLATES,
    class_embeddings,
    model_text_embedder,
    zero_shot_classify,
)
from polymodal.training import TrainConfig, load_config, train

CONFIG = REPO_ROOT / "configs" / "binding.yaml"
SUPERVISED_CONFIG = REPO_ROOT / "configs" / "av_digits.yaml"

PAIRINGS: dict[str, tuple[str, ...]] = {
    # audio rows of this one: an untrained (random) audio projection, i.e. no binding
    "flickr8k only (reference)": ("flickr8k",),
    "A: flickr8k image-text + av_digits image-audio": ("flickr8k", "av_digits"),
    "B: mnist label captions image-text + av_digits image-audio": ("mnist", "av_digits"),
    "C: flickr8k + mnist captions + av_digits": ("flickr8k", "mnist", "av_digits"),
}
#: Epochs of a pairing without Flickr8k: no validation split, so fixed epochs, last state.
NO_VAL_EPOCHS = 15
#: Epochs of the supervised reference (no early stopping; the best validation epoch kept).
SUPERVISED_EPOCHS = 60
FAST_EPOCHS = 2
PERCENT = ("r@", "accuracy", "chance", "map")


# --------------------------------------------------------------------------- configs


def base_config(fast: bool = False) -> JointTrainConfig:
    """``configs/binding.yaml`` with ``pairs.mnist.options.exclude`` set to the MNIST train
    rows that av_digits pairs with recordings (so no image is both captioned and heard)."""
    cfg = load_config(CONFIG, ["progress=false", "device=cpu"])
    assert isinstance(cfg, JointTrainConfig)
    av = cfg.pairs["av_digits"]
    paired = load_dataset("av_digits", split=av.train_split, **av.options).mnist_pairs()
    changes: dict[str, Any] = {"pairs.mnist.options.exclude": sorted({r for _, r in paired})}
    if fast:
        changes["optim.epochs"] = FAST_EPOCHS
    return cfg.replace(**changes)


def pairing_config(
    base: JointTrainConfig, uses: Sequence[str], seed: int, output_dir: str
) -> JointTrainConfig:
    """One pairing's run: ``base`` with only the pair sets ``uses``; a pairing without a
    validated pair set trains :data:`NO_VAL_EPOCHS` epochs and keeps the last state."""
    changes: dict[str, Any] = {
        "pairs": {name: base.pairs[name] for name in uses},
        "seed": seed,
        "output_dir": output_dir,
        "name": "binding_" + "_".join(uses) + f"_s{seed}",
    }
    if all(base.pairs[name].val_split is None for name in uses):
        changes["optim.epochs"] = min(NO_VAL_EPOCHS, base.optim.epochs)
        changes["patience"] = None
    return base.replace(**changes)


def supervised_config(seed: int, output_dir: str, fast: bool = False) -> TrainConfig:
    """The supervised reference: ``configs/av_digits.yaml`` on the audio alone, with the
    ``audio_logmel`` features, an ``early`` fusion of that one modality (Linear 1,361 ->
    512, GELU) and a head (dropout 0.3, Linear 512 -> 10): an MLP classifier.  Validation
    is av_digits' usual carve (one training speaker); the best validation epoch is kept."""
    cfg = load_config(SUPERVISED_CONFIG)
    assert isinstance(cfg, TrainConfig)
    return cfg.replace(
        **{
            "data.options": {"modalities": ["audio"]},
            "data.batch_size": 128,
            "model.encoders": {"audio": {"name": "audio_logmel"}},
            "model.fusion": {
                "name": "early",
                "params": {"hidden_dim": 512, "num_layers": 1, "dropout": 0.0},
            },
            "model.head": {"hidden_dim": 0, "dropout": 0.3},
            "model.modality_dropout": {},
            "optim.lr": 1e-3,
            "optim.weight_decay": 0.01,
            "optim.epochs": FAST_EPOCHS if fast else SUPERVISED_EPOCHS,
            "optim.warmup_ratio": 0.0,
            "optim.grad_clip": None,
            "patience": None,
            "seed": seed,
            "device": "cpu",
            "progress": False,
            "output_dir": output_dir,
            "name": f"binding_supervised_audio_s{seed}",
        }
    )


# --------------------------------------------------------------------------- measurement


def warm_feature_cache(base: JointTrainConfig) -> float:
    """Compute (or read) every pair set's features once through the cache; seconds taken."""
    start = time.perf_counter()
    torch.manual_seed(0)
    model = JointEmbeddingModel(base.model)
    for name, pset in base.pairs.items():
        for split in pset.splits().values():
            if split is not None:
                pair_features(
                    model, pset, base.anchor_of(name), split, cache_root=base.feature_cache
                )
    return time.perf_counter() - start


@torch.no_grad()
def audio_metrics(
    za: Tensor, zi: Tensor, digits: Tensor, embed_text: Callable[[list[str]], Tensor]
) -> dict[str, float]:
    """The measured questions on the av_digits test side (fractions, not percent).

    Args:
        za: the recordings in the joint space.
        zi: the MNIST test image paired with each recording, in the joint space.
        digits: the digit of each recording (and of its image).
        embed_text: texts -> joint-space vectors (the model's text side).

    Shape:
        za: (R, D); zi: (R, D); digits: (R,).
    """
    out: dict[str, float] = {}
    classes = class_embeddings(embed_text, DIGIT_NAMES, AUDIO_DIGIT_TEMPLATES)  # (10, D)
    zs = zero_shot_classify(za, classes, digits)
    out["zs_audio_accuracy"] = zs.accuracy
    out["chance"] = zs.chance
    # text -> audio: one query per (digit, template) prompt
    prompts = [t.format(n) for n in DIGIT_NAMES for t in AUDIO_DIGIT_TEMPLATES]
    zq = F.normalize(embed_text(prompts), dim=-1)  # (30, D)
    q_digit = torch.arange(len(DIGIT_NAMES)).repeat_interleave(len(AUDIO_DIGIT_TEMPLATES))
    rel = q_digit[:, None] == digits[None, :]  # (30, R)
    m = retrieval_metrics(zq @ za.T, rel, prefixes=("t2a", "a2t"))
    for k in (1, 5, 10):
        out[f"t2a_r@{k}"] = m[f"t2a_r@{k}"]
    out["t2a_map"] = m["t2a_map"]
    # the bound pair: audio -> image, relevant = same digit
    m = retrieval_metrics(za @ zi.T, digits[:, None] == digits[None, :], prefixes=("a2i", "i2a"))
    out["a2i_r@1"] = m["a2i_r@1"]
    img_classes = class_embeddings(embed_text, DIGIT_NAMES, IMAGE_DIGIT_TEMPLATES)
    out["zs_image_accuracy"] = zero_shot_classify(zi, img_classes, digits).accuracy
    return out


@torch.no_grad()
def evaluate(run_dir: Path, base: JointTrainConfig, flickr: bool) -> dict[str, float]:
    """Reload a run's best checkpoint and measure it on the test sides (never selected on)."""
    model, _ = load_joint_checkpoint(run_dir)
    av = base.pairs["av_digits"]
    assert av.test_split is not None
    test = pair_features(model, av, "image", av.test_split, cache_root=base.feature_cache)
    ds = load_dataset("av_digits", split=av.test_split, **av.options)
    digits = torch.tensor(ds.targets()[: test.anchor_features.shape[0]])  # (R,)
    za = model.project("audio", test.other_features)  # (R, D)
    zi = model.project("image", test.anchor_features)  # (R, D), one test image per recording
    out = audio_metrics(za, zi, digits, model_text_embedder(model))
    if flickr:
        fl = base.pairs["flickr8k"]
        assert fl.test_split is not None
        pf = pair_features(model, fl, "image", fl.test_split, cache_root=base.feature_cache)
        m = evaluate_pairs(model, [pf], ks=(1,))
        out["flickr_i2t_r@1"] = m["image2text_r@1"]
        out["flickr_t2i_r@1"] = m["text2image_r@1"]
    return out


# --------------------------------------------------------------------------- main


def _summary(
    name: str, runs: list[dict[str, float]], seconds: list[float], best: list[int]
) -> list[dict[str, Any]]:
    out = []
    for metric in runs[0]:
        values = [r[metric] for r in runs]
        scale = 100.0 if any(p in metric for p in PERCENT) else 1.0
        out.append(
            record(
                "binding",
                "flickr8k" if metric.startswith("flickr") else "av_digits test speakers",
                name,
                metric,
                scale * statistics.mean(values),
                std=scale * statistics.stdev(values) if len(values) > 1 else None,
                n_seeds=len(values),
                seconds=statistics.mean(seconds),
                best_epochs="/".join(str(b) for b in best),
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 of every run")
    parser.add_argument("--fast", action="store_true", help=f"{FAST_EPOCHS} epochs (smoke test)")
    parser.add_argument("--name", default="binding", help="results file stem")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite results/<name>.md from its JSON with the current notes",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.render:
        return render(args.name)

    t0 = time.perf_counter()
    base = base_config(args.fast)
    feature_seconds = warm_feature_cache(base)
    print(f"features: {feature_seconds:.1f}s", flush=True)

    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="binding-") as tmp:
        for name, uses in PAIRINGS.items():
            runs: list[dict[str, float]] = []
            seconds: list[float] = []
            best: list[int] = []
            for seed in range(args.seeds):
                cfg = pairing_config(base, uses, seed, f"{tmp}/{'_'.join(uses)}_s{seed}")
                result = train(cfg)
                metrics = evaluate(result.run_dir, base, flickr="flickr8k" in uses)
                runs.append(metrics)
                seconds.append(result.seconds)
                best.append(result.best_epoch)
                print(
                    f"{name} seed {seed}: "
                    + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
                    + f" (best epoch {result.best_epoch} of {result.epochs_run},"
                    f" {result.seconds:.1f}s)",
                    flush=True,
                )
            records += _summary(name, runs, seconds, best)

        accs: list[float] = []
        sup_seconds: list[float] = []
        sup_best: list[int] = []
        for seed in range(args.seeds):
            result = train(supervised_config(seed, f"{tmp}/supervised_s{seed}", args.fast))
            assert result.test is not None
            accs.append(result.test["accuracy"])
            sup_seconds.append(result.seconds)
            sup_best.append(result.best_epoch)
            print(
                f"supervised seed {seed}: accuracy={accs[-1]:.3f} (best epoch "
                f"{result.best_epoch}, {result.seconds:.1f}s)",
                flush=True,
            )
    records.append(
        record(
            "binding",
            "av_digits test speakers",
            "supervised reference: MLP classifier on the same log-mel features (digit labels)",
            "accuracy",
            100 * statistics.mean(accs),
            std=100 * statistics.stdev(accs) if len(accs) > 1 else None,
            n_seeds=len(accs),
            seconds=statistics.mean(sup_seconds),
            best_epochs="/".join(str(b) for b in sup_best),
        )
    )
    records.append(
        record(
            "binding",
            "flickr8k + av_digits + mnist",
            "features (flickr8k cached; mnist 64 px effnet + log-mel on first run)",
            "seconds",
            feature_seconds,
        )
    )
    records.append(record("binding", "all", "whole benchmark", "seconds", time.perf_counter() - t0))
    print_table(records)
    write_results(args.name, records, title=TITLE, notes=NOTES)
    return 0


def render(name: str) -> int:
    """Rewrite ``results/<name>.md`` from ``results/<name>.json`` (notes edited afterwards)."""
    import json

    from _common import RESULTS_DIR

    records = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    write_results(name, records, title=TITLE, notes=NOTES, command=COMMAND)
    return 0


COMMAND = "POLYMODAL_DATA=../shared/data python benchmarks/binding.py --seeds 1"
TITLE = "Binding: text and audio made comparable through a shared image space"
NOTES = """
(to be written from the measured run)
"""


if __name__ == "__main__":
    raise SystemExit(main())
