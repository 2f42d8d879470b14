"""Retrieval benchmark: Flickr8k image-text retrieval on cached frozen features; search speed.

Part 1 (``flickr8k``): frozen EfficientNet-Lite0 (1280-d pooled) and frozen MiniLM (384-d)
features of every Flickr8k image and caption are computed once and cached
(``polymodal.retrieval.features``); projections into a shared space are trained with
CLIP's loss on the train split (all 5 captions per image as positives), early-stopped on
the val split, and evaluated once on the 1,000 test images vs their 5,000 captions.
A linear projection (the README's probe) and a linear + MLP projection are both reported,
each as mean and std over ``--seeds`` seeds.

Part 2 (``random``): search throughput and recall@10 against exact search over random
unit 256-d vectors (``--sizes``, default 100k and 1M): ExactIndex (torch), FAISS flat /
IVF / HNSW, and a numpy bound (float32 tiled matmul + argpartition), all with one thread;
ExactIndex and numpy interleaved, median of 3.  ``clustered``: the same on a Gaussian
mixture (100k vectors), where IVF and HNSW have structure to exploit.

Part 3 (``mnist``): zero-shot digit classification of MNIST test images through the
Flickr8k-trained image-text space and text prompts.

Run (from the repository root, ``POLYMODAL_DATA=../shared/data``)::

    python benchmarks/retrieval.py                      # every part, 3 seeds
    python benchmarks/retrieval.py --parts flickr8k mnist --seeds 3
    python benchmarks/retrieval.py --parts random clustered --sizes 100000 1000000 \\
        --name retrieval_search   # a separate results file
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import merge_records, previous_records, print_table, record, write_results
from polymodal.data.datasets._common import load_dataset
from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.retrieval.features import FeatureSet, cached_features, tensor_batch, text_batch

IMAGE_ENCODER: tuple[str, dict[str, Any]] = ("efficientnet_lite0", {})
TEXT_ENCODER: tuple[str, dict[str, Any]] = ("minilm", {})
_ENCODERS: dict[str, torch.nn.Module] = {}


def _encoder(name: str, params: dict[str, object], spec: object) -> torch.nn.Module:
    if name not in _ENCODERS:
        _ENCODERS[name] = build_encoder(name, spec=spec, **params)
    return _ENCODERS[name]


def flickr_features(split: str, progress: bool = False) -> tuple[FeatureSet, FeatureSet]:
    """Cached pooled image features (one per image) and caption features (5 per image)."""
    ds = load_dataset("flickr8k", split=split)
    images = ds.images()  # type: ignore[attr-defined]
    captions = ds.captions()  # type: ignore[attr-defined]
    img_enc = _encoder(IMAGE_ENCODER[0], IMAGE_ENCODER[1], ds.schema["image"])
    txt_enc = _encoder(TEXT_ENCODER[0], TEXT_ENCODER[1], ds.schema["text"])

    def report(done: int, total: int) -> None:
        if progress and (done % 640 == 0 or done == total):
            print(f"  {split}: {done}/{total}", file=sys.stderr, flush=True)

    def image_batch(positions: Sequence[int]) -> ModalityBatch:
        return tensor_batch([ds[i].modalities["image"] for i in positions])  # type: ignore[misc]

    img = cached_features(
        img_enc,
        image_batch,
        images,
        dataset="flickr8k",
        split=split,
        modality="image",
        encoder_name=IMAGE_ENCODER[0],
        encoder_params=IMAGE_ENCODER[1],
        progress=report,
    )
    texts = [c for caps in captions for c in caps]
    ids = [f"{name}#{k}" for name in images for k in range(len(captions[0]))]
    txt = cached_features(
        txt_enc,
        lambda positions: text_batch([texts[i] for i in positions]),
        ids,
        dataset="flickr8k",
        split=split,
        modality="text",
        encoder_name=TEXT_ENCODER[0],
        encoder_params=TEXT_ENCODER[1],
        batch_size=128,
        progress=report,
    )
    return img, txt


# --------------------------------------------------------------------------- part 1


def _caption_map(n_images: int, per_image: int = 5) -> torch.Tensor:
    return torch.arange(n_images).repeat_interleave(per_image)  # caption row -> image row


def flickr_model(
    projection: str,
    dim: int,
    hidden: int | None,
    dropout: float,
    input_norm: bool = False,
    layers: int = 2,
) -> Any:
    from polymodal.data.modality import ModalitySpec
    from polymodal.models.config import EncoderConfig
    from polymodal.models.joint import JointConfig, JointEmbeddingModel, JointModalityConfig

    image_spec = ModalitySpec("image", ModalityKind.IMAGE, shape=(3, 224, 224))
    text_spec = ModalitySpec("text", ModalityKind.TEXT)
    config = JointConfig(
        (
            JointModalityConfig(
                image_spec,
                EncoderConfig(IMAGE_ENCODER[0], IMAGE_ENCODER[1]),
                projection=projection,
                hidden_dim=hidden,
                dropout=dropout,
                input_norm=input_norm,
                layers=layers,
            ),
            JointModalityConfig(
                text_spec,
                EncoderConfig(TEXT_ENCODER[0], TEXT_ENCODER[1]),
                projection=projection,
                hidden_dim=hidden,
                dropout=dropout,
                input_norm=input_norm,
                layers=layers,
            ),
        ),
        dim=dim,
        anchor="image",
    )
    encoders = {
        "image": _encoder(IMAGE_ENCODER[0], IMAGE_ENCODER[1], image_spec),
        "text": _encoder(TEXT_ENCODER[0], TEXT_ENCODER[1], text_spec),
    }
    return JointEmbeddingModel(config, encoders=encoders)  # type: ignore[arg-type]


#: (name, flickr_model arguments, ContrastiveConfig overrides); the last one's model is
#: used for the zero-shot part.  Chosen on the val split (R@1 mean), see the notes.
SETUPS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "linear projection, one random caption per image and epoch",
        {"projection": "linear", "dim": 256, "hidden": None, "dropout": 0.0},
        {},
    ),
    (
        "linear + MLP (residual) projection, all 5 captions per step (multi-positive InfoNCE)",
        {
            "projection": "residual",
            "dim": 512,
            "hidden": 2048,
            "dropout": 0.5,
            "input_norm": True,
        },
        {
            "epochs": 20,
            "batch_size": 1024,
            "lr": 2e-3,
            "weight_decay": 0.1,
            "patience": 4,
            "all_positives": True,
        },
    ),
]


def run_flickr(records: list[dict[str, Any]], fast: bool, seeds: int = 3) -> Any:
    """Train every setup of :data:`SETUPS` with ``seeds`` seeds; test R@K as mean and std."""
    from polymodal.retrieval.metrics import retrieval_metrics
    from polymodal.training.contrastive import ContrastiveConfig, PairedFeatures, train_contrastive

    t0 = time.perf_counter()
    feats = {split: flickr_features(split, progress=True) for split in ("train", "val", "test")}
    feature_seconds = time.perf_counter() - t0
    hits = all(img.hit and txt.hit for img, txt in feats.values())
    print(f"features: {feature_seconds:.1f}s (cache {'hit' if hits else 'miss'})", flush=True)

    def pairs(split: str) -> Any:
        img, txt = feats[split]
        return PairedFeatures(
            "image", "text", img.features, txt.features, _caption_map(img.features.shape[0])
        )

    def split_metrics(models: Sequence[Any], split: str) -> dict[str, float]:
        """R@K (percent) of ``split``, ranking by the models' mean cosine similarity.

        Several models (independently trained spaces, so their embeddings cannot be
        averaged) are ensembled at the score level: the mean of their similarity matrices.
        """
        img, txt = feats[split]
        with torch.no_grad():
            sim = sum(
                m.project("image", img.features) @ m.project("text", txt.features).T for m in models
            ) / len(models)  # (N images, 5 N captions)
        rel = torch.zeros(sim.shape, dtype=torch.bool)
        rel[_caption_map(sim.shape[0]), torch.arange(sim.shape[1])] = True
        metrics = retrieval_metrics(sim, rel)
        return {key: 100 * metrics[key] for key in _R_AT_K}

    best_model = None
    for name, model_kw, overrides in SETUPS:
        runs: list[dict[str, float]] = []
        first_model = None
        models = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = flickr_model(**model_kw)
            settings: dict[str, Any] = {
                "epochs": 30,
                "batch_size": 256,
                "lr": 1e-3,
                "temperature": 0.05,
                "patience": 5,
                **overrides,
                "seed": seed,
            }
            if fast:
                settings["epochs"] = 2
            config = ContrastiveConfig(**settings)
            result = train_contrastive(model, [pairs("train")], [pairs("val")], config, log=True)
            models.append(model.eval())
            run: dict[str, float] = split_metrics([model], "test")
            run |= {
                "seconds": result.seconds,
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "temperature": result.temperatures["image-text"],
                "val_i2t_r@1": 100 * result.metrics["image2text_r@1"],
                "val_t2i_r@1": 100 * result.metrics["text2image_r@1"],
            }
            runs.append(run)
            print(
                f"{name} seed {seed}: i2t R@1/5/10 "
                + "/".join(f"{run[f'i2t_r@{k}']:.1f}" for k in (1, 5, 10))
                + ", t2i "
                + "/".join(f"{run[f't2i_r@{k}']:.1f}" for k in (1, 5, 10))
                + f" ({result.seconds:.1f}s, best epoch {result.best_epoch})",
                flush=True,
            )
            if first_model is None:
                first_model = model
        method = f"frozen effnet-lite0 + minilm, {name}"
        extra: dict[str, Any] = {
            key: _join(r[key] for r in runs)
            for key in ("best_epoch", "epochs_run", "temperature", "val_i2t_r@1", "val_t2i_r@1")
        }
        seconds = statistics.mean(r["seconds"] for r in runs)
        for key in (*_R_AT_K, "seconds"):
            values = [r[key] for r in runs]
            records.append(
                record(
                    "retrieval",
                    "flickr8k",
                    method + (" (training time)" if key == "seconds" else ""),
                    key,
                    statistics.mean(values),
                    std=statistics.stdev(values) if len(values) > 1 else None,
                    n_seeds=len(values),
                    seconds=None if key == "seconds" else seconds,
                    **extra,
                )
            )
        if len(models) > 1:
            # The seeds' models as one (mean of their similarity matrices).  Its val R@1 is
            # reported next to the single models' so the choice rests on val.
            val = split_metrics(models, "val")
            test = split_metrics(models, "test")
            print(f"{name} ensemble of {len(models)}: val {val}, test {test}", flush=True)
            for key in _R_AT_K:
                records.append(
                    record(
                        "retrieval",
                        "flickr8k",
                        f"{method}, ensemble of the {len(models)} seeds' models",
                        key,
                        test[key],
                        n_seeds=len(models),
                        seconds=sum(r["seconds"] for r in runs),
                        **{"val_i2t_r@1": round(val["i2t_r@1"], 2)},
                        **{"val_t2i_r@1": round(val["t2i_r@1"], 2)},
                    )
                )
        best_model = first_model
    records.append(
        record(
            "retrieval",
            "flickr8k",
            "embed 8,000 images + 40,000 captions (frozen encoders, threads=1)",
            "seconds",
            feature_seconds,
            cache_hit=hits,
        )
    )
    return best_model


_R_AT_K = tuple(f"{d}_r@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10))


def _join(values: Any) -> str:
    """Per-seed values as one column ("20/18/20"), rounded for the table."""
    return "/".join(f"{v:.4g}" for v in values)


# --------------------------------------------------------------------------- part 2


def _recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def random_vectors(rng: np.random.Generator, n: int, dim: int, block: int = 1 << 17) -> np.ndarray:
    """(n, dim) float32 unit vectors, isotropic Gaussian directions, drawn in blocks."""
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, block):
        out[s : s + block] = rng.standard_normal((min(block, n - s), dim), dtype=np.float32)
    return _unit(out)


def clustered_vectors(
    rng: np.random.Generator, n: int, centres: np.ndarray, sigma: float
) -> np.ndarray:
    """(n, dim) unit vectors of a Gaussian mixture: a random centre plus sigma-norm noise."""
    dim = centres.shape[1]
    which = rng.integers(0, centres.shape[0], n)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(sigma / math.sqrt(dim))
    return _unit(centres[which] + noise)


def numpy_search(
    base: np.ndarray, queries: np.ndarray, k: int, q_chunk: int = 256, n_chunk: int = 16384
) -> np.ndarray:
    """Exact top-k indices (Q, k), best first: float32 matmul + argpartition on tiles.

    The reference bound, written as a careful numpy user would: float32 throughout, the
    score matrix computed tile by tile (``q_chunk`` queries x ``n_chunk`` vectors, 16 MB)
    so it stays small instead of a (Q, N) matrix of gigabytes, ``np.argpartition`` per
    tile (no negated copy), then one argpartition over the per-tile candidates.  Run it
    under ``threadpool_limits(1)`` to match torch's thread count.
    """
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for qs in range(0, queries.shape[0], q_chunk):
        q = queries[qs : qs + q_chunk]  # (q, D)
        cand_scores, cand_ids = [], []
        for ns in range(0, base.shape[0], n_chunk):
            scores = q @ base[ns : ns + n_chunk].T  # (q, c) float32
            kk = min(k, scores.shape[1])
            part = np.argpartition(scores, -kk, axis=1)[:, -kk:]  # (q, kk)
            cand_ids.append(part + ns)
            cand_scores.append(np.take_along_axis(scores, part, 1))
        sc, ids = np.concatenate(cand_scores, 1), np.concatenate(cand_ids, 1)  # (q, C)
        part = np.argpartition(sc, -k, axis=1)[:, -k:]  # (q, k)
        order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1)
        out[qs : qs + q_chunk] = np.take_along_axis(np.take_along_axis(ids, part, 1), order, 1)
    return out


def _ann_variants(n: int, dim: int) -> list[tuple[str, Any]]:
    """FAISS variants per size; parameters chosen to keep the 1M build within minutes."""
    from polymodal.retrieval.index import FaissIndex

    nlist = math.isqrt(n)  # IVF trains on 256 * nlist samples: 1000 cells at 1M
    m, ef = (32, 128) if n <= 100_000 else (16, 128)
    return [
        ("FaissIndex flat", lambda: FaissIndex(dim, kind="flat")),
        (
            f"FaissIndex ivf nlist={nlist} nprobe=32",
            lambda: FaissIndex(dim, kind="ivf", nlist=nlist, nprobe=32),
        ),
        (
            f"FaissIndex hnsw M={m} efConstruction=40 efSearch={ef}",
            lambda: FaissIndex(dim, kind="hnsw", M=m, efSearch=ef),
        ),
    ]


def run_search(
    records: list[dict[str, Any]],
    n: int,
    dim: int,
    n_queries: int,
    clustered: bool = False,
    repeats: int = 3,
    save: Any = None,
) -> None:
    """Exact and approximate search over ``n`` vectors: q/s, recall@10, build seconds.

    ``save`` (a callable) is called after every variant, so a long run keeps what it has.
    """
    import faiss
    from threadpoolctl import threadpool_limits

    from polymodal.retrieval.index import ExactIndex

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    if clustered:
        n_centres = max(10, n // 100)
        centres = random_vectors(rng, n_centres, dim)
        base = clustered_vectors(rng, n, centres, sigma=0.5)
        queries = clustered_vectors(rng, n_queries, centres, sigma=0.5)
        dataset = f"clustered unit vectors N={n} d={dim} ({n_centres} Gaussian clusters, sigma=0.5)"
    else:
        base = random_vectors(rng, n, dim)
        queries = random_vectors(rng, n_queries, dim)
        dataset = f"random unit vectors N={n} d={dim}"
    k = 10
    ids = [str(i) for i in range(n)]
    common = {"threads": 1, "n_queries": n_queries, "k": k}
    print(f"{dataset}: {n_queries} queries", flush=True)

    # exact: numpy bound (ground truth) and ExactIndex, interleaved, median of `repeats`
    t = time.perf_counter()
    exact = ExactIndex(dim)
    exact.add(base, ids, modality="vector")
    exact_build = time.perf_counter() - t
    np_times: list[float] = []
    ex_times: list[float] = []
    with threadpool_limits(limits=1):
        for _ in range(repeats):
            t = time.perf_counter()
            truth = numpy_search(base, queries, k)
            np_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = exact.search(queries, k)
            ex_times.append(time.perf_counter() - t)
    exact_recall = _recall_at_k(res.indices.numpy(), truth)
    del exact, res
    np_s, ex_s = statistics.median(np_times), statistics.median(ex_times)
    timing = {**common, "n_repeats": repeats}
    records.append(
        record(
            "retrieval",
            dataset,
            "numpy bound: float32 matmul + argpartition, 256x16384 tiles",
            "queries_per_s",
            n_queries / np_s,
            seconds=np_s,
            recall_at_10=1.0,
            build_s=0.0,
            **timing,
        )
    )
    records.append(
        record(
            "retrieval",
            dataset,
            "ExactIndex (torch, chunked topk)",
            "queries_per_s",
            n_queries / ex_s,
            seconds=ex_s,
            recall_at_10=round(exact_recall, 4),
            build_s=round(exact_build, 2),
            **timing,
        )
    )
    records.append(
        record(
            "retrieval",
            dataset,
            "ExactIndex q/s / numpy bound q/s (interleaved, medians)",
            "ratio",
            np_s / ex_s,
            seconds=sum(np_times) + sum(ex_times),
            **timing,
        )
    )
    print(
        f"numpy bound {n_queries / np_s:.0f} q/s, ExactIndex {n_queries / ex_s:.0f} q/s "
        f"(recall {exact_recall:.3f}), ratio {np_s / ex_s:.2f}",
        flush=True,
    )

    for name, make in _ann_variants(n, dim):
        index = make()
        t = time.perf_counter()
        index.add(base, ids, modality="vector")
        index.search(queries[:1], 1)  # builds / trains the FAISS index
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        found = index.search(queries, k).indices.numpy()
        search_s = time.perf_counter() - t
        recall = _recall_at_k(found, truth)
        records.append(
            record(
                "retrieval",
                dataset,
                name,
                "queries_per_s",
                n_queries / search_s,
                seconds=search_s,
                recall_at_10=round(recall, 4),
                build_s=round(build_s, 2),
                **common,
            )
        )
        print(
            f"{name}: {n_queries / search_s:.0f} q/s, recall@10 {recall:.3f}, build {build_s:.1f}s",
            flush=True,
        )
        # the overhead check on at most ~1e8 query-vector pairs (flat at 1M is slow)
        n_over = max(100, min(n_queries, 100_000_000 // n))
        over = {**common, "n_queries": n_over}
        _faiss_overhead(records, dataset, name, index, queries[:n_over], k, over)
        del index
        if save is not None:
            save()


def _faiss_overhead(
    records: list[dict[str, Any]],
    dataset: str,
    name: str,
    index: Any,
    queries: np.ndarray,
    k: int,
    common: dict[str, Any],
    repeats: int = 3,
) -> None:
    """Time FaissIndex.search against a direct call on the very same FAISS index object.

    Interleaved repeats (wrapper, direct, wrapper, ...); the ratio of medians is the
    wrapper's overhead (query normalisation, tensor conversion, id lookup).
    """
    raw = index._build()  # the built faiss.Index the wrapper searches
    q = np.ascontiguousarray(queries)
    wrapper: list[float] = []
    direct: list[float] = []
    for _ in range(repeats):
        t = time.perf_counter()
        index.search(queries, k)
        wrapper.append(time.perf_counter() - t)
        t = time.perf_counter()
        raw.search(q, k)
        direct.append(time.perf_counter() - t)
    w, d = statistics.median(wrapper), statistics.median(direct)
    n_q = len(queries)
    records.append(
        record(
            "retrieval",
            dataset,
            f"{name}: faiss called directly",
            "queries_per_s",
            n_q / d,
            seconds=d,
            n_repeats=repeats,
            **common,
        )
    )
    records.append(
        record(
            "retrieval",
            dataset,
            f"{name}: wrapper time / direct time",
            "ratio",
            w / d,
            seconds=w + d,
            n_repeats=repeats,
            **common,
        )
    )
    print(f"  {name}: direct {n_q / d:.0f} q/s, wrapper/direct time {w / d:.3f}", flush=True)


# --------------------------------------------------------------------------- part 3


def run_mnist(records: list[dict[str, Any]], model: Any, n: int = 500) -> None:
    from polymodal.data.datasets._common import locate
    from polymodal.data.datasets.av_digits import MNIST_INFO, read_idx
    from polymodal.data.decode import image_from_array
    from polymodal.retrieval.zeroshot import (
        DIGIT_NAMES,
        IMAGE_DIGIT_TEMPLATES,
        class_embeddings,
        model_text_embedder,
        zero_shot_classify,
    )

    root = locate(MNIST_INFO)
    images = read_idx(root / "t10k-images-idx3-ubyte.gz")[:n]
    labels = torch.from_numpy(read_idx(root / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64))
    spec = model.config["image"].spec
    feats = cached_features(
        model.encoders["image"],
        lambda pos: tensor_batch([image_from_array(images[i].copy(), size=224) for i in pos]),
        [f"t10k-{i}" for i in range(n)],
        dataset="mnist",
        split="test",
        modality="image",
        encoder_name=IMAGE_ENCODER[0],
        encoder_params={**IMAGE_ENCODER[1], "size": list(spec.shape or ())},
    )
    with torch.no_grad():
        z = model.project("image", feats.features)  # (n, D)
    embed = model_text_embedder(model)
    for names, label in ((DIGIT_NAMES, "words"), ([str(d) for d in range(10)], "digits")):
        classes = class_embeddings(embed, names, IMAGE_DIGIT_TEMPLATES)
        result = zero_shot_classify(z, classes, labels)
        method = f"zero-shot via Flickr8k image-text space, class names as {label}"
        records.append(
            record(
                "retrieval",
                f"mnist test[:{n}]",
                method,
                "accuracy",
                result.accuracy,
                chance=round(result.chance, 4),
                templates=len(IMAGE_DIGIT_TEMPLATES),
            )
        )
        print(
            f"mnist zero-shot ({label}): {result.accuracy:.3f} (chance {result.chance:.3f})",
            flush=True,
        )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["flickr8k", "random", "clustered", "mnist"],
        choices=["flickr8k", "random", "clustered", "mnist"],
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=[100_000, 1_000_000],
        help="collection sizes of the random-vector search part",
    )
    parser.add_argument(
        "--clustered-n", type=int, default=100_000, help="vectors of the clustered set"
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=1000,
        help="queries at N <= 100k; larger N uses max(200, queries * 100k / N)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per Flickr8k setup")
    parser.add_argument("--fast", action="store_true", help="2 epochs (smoke test)")
    parser.add_argument("--name", default="retrieval", help="results file stem")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records: list[dict[str, Any]] = []

    previous = previous_records(args.name)

    def save() -> None:  # after every part, so a late failure keeps the earlier ones
        # Records of parts not re-run here are kept, so parts can be run separately.
        write_results(
            args.name,
            merge_records(previous, records, ("dataset", "method", "metric")),
            title="Retrieval: Flickr8k, search throughput, zero-shot",
            notes=NOTES,
        )

    model = None
    if "flickr8k" in args.parts or "mnist" in args.parts:
        model = run_flickr(records, args.fast, args.seeds)
        save()
    if "mnist" in args.parts and model is not None:
        run_mnist(records, model)
        save()
    searches = [(n, False) for n in args.sizes if "random" in args.parts]
    if "clustered" in args.parts:
        searches.append((args.clustered_n, True))
    for n, clustered in sorted(searches):  # the largest (slowest) last
        n_q = min(args.queries, max(200, args.queries * 100_000 // n))
        run_search(records, n, 256, n_q, clustered=clustered, save=save)
    print_table(records)
    save()
    return 0


NOTES = """
Flickr8k rows: R@K in percent, 1,000 test images vs their 5,000 captions, mean and std
over 3 seeds (seed = weight init, pairing and shuffling); ``seconds`` is the projection
training time on cached features (one CPU thread, a machine shared with other jobs, so
wall-clock times vary by 2x); the per-seed best epoch, epochs run, final temperature
and val R@1 are listed seed by seed.  The features (frozen EfficientNet-Lite0 pooled
1280-d, frozen MiniLM 384-d) are computed once and cached (``polymodal.retrieval.features``;
about 25 min for 8,000 images and 40,000 captions with one thread on this machine, then
read back in about a second).

Model selection used the val split only (R@1 of both directions; the test split is read
once per seed, at the end of each run, and was not looked at to choose).  Earlier
settings (val R@1 i2t / t2i, seed 0): linear, one caption per image and epoch 26.2 /
19.1; MLP 512-d (hidden 2048, dropout 0.2) 25.2 / 19.2, with an input LayerNorm 27.1 /
19.9; MLP dropout 0.5, batch 512 26.7 / 21.7; features standardised instead of
LayerNorm 25.4 / 21.0; the same MLP with all 5 captions per step (multi-positive
InfoNCE) 28.8 / 22.2; linear + MLP (residual) with all 5 captions, batch 512, 16 epochs
29.8 / 22.6; the same with dropout 0.6 and weight decay 0.2 28.8 / 22.2.  Trials of this
round, all residual 512-d, hidden 2048, dropout 0.5, input LayerNorm, weight decay 0.1,
all 5 captions, seed 0:

| trial | change from the 20-epoch setting | val i2t R@1 | val t2i R@1 | best / run epochs |
| --- | --- | --- | --- | --- |
| kept | 20 epochs, batch 1024, lr 2e-3, init temperature 0.05 (earlier round) | 30.3 | 22.8 | 20 / 20 |
| A | 40 epochs (cosine over 40), patience 6 | 29.5 | 22.6 | 13 / 19 |
| F | batch 2048, lr 3e-3, warm-up 20 steps | 27.2 | 22.8 | 19 / 20 |
| C | initial temperature 0.07 (learned; ends at 0.062) | 27.5 | 21.9 | 18 / 20 |

None beat the kept setting on val (A overfits once the learning rate stays high: train
loss keeps falling while val R@1 peaks at epoch 13), so it stays; its per-seed val R@1
are in the ``val_*`` columns above.  On test (3 seeds) it reaches i2t R@1 29.7 +- 0.6
and t2i 23.3 +- 0.4: the t2i target (22) is met, the i2t target (30) is missed by 0.3.
The "ensemble of the 3 seeds' models" rows rank by the mean of the three models'
similarity matrices (their spaces are trained independently, so embeddings cannot be
averaged; averaging unit embeddings measured 22.0 i2t R@1 for the linear setup, worse
than one model).  Trained in 907 s in all (within the 30-minute budget), the residual
ensemble gives test i2t R@1 30.4 and t2i 24.2.  On val it gains R@5/R@10 (+1.5 to +2)
and t2i R@1 (23.6 against the single models' 22.5), but not i2t R@1 (29.2 against
29.8), so the i2t target is met only by the ensemble and narrowly.

Search rows: one thread for torch, numpy (``threadpoolctl``) and FAISS; k=10; 1,000
queries at N=100k and 200 at N=1M (``seconds`` is the time of all of them);
recall@10 against the exact top 10 of the numpy bound; ``build_s`` is the time to add
the vectors and build/train the index.  Uniformly random vectors in 256-d have no
cluster structure, the worst case for IVF and HNSW (their recall there is a lower bound
of what real embeddings give); the clustered set (a Gaussian mixture of N/100 random unit
centres plus noise of norm 0.5, queries drawn from the same mixture) is where their
recall means something.  FAISS parameters: IVF nlist = sqrt(N) (316 at 100k, 1,000 at
1M; FAISS trains on 256 * nlist samples, so a larger nlist costs minutes at 1M), nprobe
32; HNSW M=32 at 100k, M=16 at 1M (efConstruction 40, the FAISS default; efSearch 128):
the build is single-threaded and took 41 s at 100k with M=32, so M=16 keeps the 1M
build to minutes.  ``faiss called directly`` / ``wrapper time / direct time``: the very
same FAISS index searched by ``faiss`` itself and by ``FaissIndex`` (interleaved, median
of 3; at 1M on 100 queries).  At 1M the FAISS flat rate (10 q/s) is not comparable
to its 100k rate: FAISS's exhaustive search is slow on small query batches (measured
apart, one thread: 6 M query-vector pairs/s with 200 queries vs 30 M with 1,000 at 100k,
8 M with 200 or 400 at 1M).  HNSW with M=16 on 1M random vectors is of no use (recall
0.025 after a 476 s build): on structureless data a graph index needs a far larger M
and efConstruction than a one-thread build allows here; on the clustered set M=32
reaches 0.996 at 4,600 q/s.

The numpy bound was unfair before this round and is now a best-effort numpy search: the
old one computed the whole (Q, N) score matrix in one go (400 MB at 100k), negated it
into a second 400 MB copy for ``argpartition``, selected over 100k-wide rows far out of
cache, ran once, cold (first touch of fresh pages) and not interleaved with ExactIndex,
and let OpenBLAS use its own 2 threads on a 2-core machine while torch used 1.  Now
float32 throughout, tiles of 256 queries x 16,384 vectors (a 16 MB score block),
``np.argpartition`` per tile on the scores themselves and once over the candidates,
OpenBLAS limited to 1 thread, and timed interleaved with ExactIndex (median of 3).  On a
contended smoke test at 100k this alone took the bound from 120 to 218 q/s (its bare
matmul: 243 q/s).  The ``ratio`` row is ExactIndex q/s / numpy q/s from that
interleaved run.

MNIST rows: zero-shot accuracy of the first 500 MNIST test digits (upsampled to 224x224
RGB) against text prompts (4 templates) through the Flickr8k image-text space above
(seed 0's model); ``chance`` is the most frequent class's share.
"""


if __name__ == "__main__":
    raise SystemExit(main())
