"""``polymodal embed CHECKPOINT SOURCE -o DIR``: embed a data set with a joint model.

``SOURCE`` is a built-in data set name (``flickr8k``; ``--split`` picks the split) or a
CSV/JSONL manifest.  Every modality that both the model and the data have is embedded
(``--modalities`` narrows it); for each one ``DIR/<modality>/`` receives

* ``vectors.npy``: (N, D) float32 unit vectors in the joint space;
* ``ids.json``: the N item ids;
* ``metadata.json``: one dict per item: ``modality``, ``example`` (the example id),
  ``path`` (the item's file, when it has one), ``text`` (for text items).

Examples whose ``meta["captions"]`` lists several texts (Flickr8k's five captions) give
one text item per caption, with id ``<example>#<k>``.  ``DIR/embeddings.json``, written
last, records the checkpoint, the model fingerprint, D and the counts; ``polymodal index
build DIR`` reads it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.data.collate import collate
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch, Sample
from polymodal.models.joint import JointEmbeddingModel
from polymodal.training.checkpoint import atomic_write_text

EMBEDDINGS_FILE = "embeddings.json"
EMBEDDINGS_FORMAT = "polymodal-embeddings"
FORMAT_VERSION = 1
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


def add_parser(subparsers: Any) -> None:
    """Add ``embed`` to the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "embed",
        help="embed a data set or manifest with a joint embedding checkpoint",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a joint embedding checkpoint folder")
    p.add_argument(
        "source", metavar="MANIFEST_OR_DATASET", help="a built-in data set name or a manifest"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--split",
        default=None,
        help="split of a built-in data set (default: test), or the "
        "manifest split column value to keep (default: all rows)",
    )
    p.add_argument(
        "--modalities", nargs="+", default=None, metavar="NAME", help="modalities to embed"
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N examples only")
    p.add_argument("--batch-size", type=int, default=32, metavar="B")
    p.add_argument("--root", default=None, metavar="PATH", help="data set folder")
    p.set_defaults(func=run)


def load_source(source: str, split: str | None, root: str | None) -> MultimodalDataset:
    """A manifest path or a built-in data set name -> the data set."""
    path = Path(source)
    if path.suffix.lower() in MANIFEST_SUFFIXES or path.is_file():
        from polymodal.data.manifest import ManifestDataset

        if not path.is_file():
            raise FileNotFoundError(f"The manifest {path} does not exist; check the path.")
        return ManifestDataset(path, split=split)
    from polymodal.data.datasets._common import load_dataset

    kwargs: dict[str, Any] = {} if root is None else {"root": root}
    return load_dataset(source, split=split or "test", **kwargs)


def item_path(dataset: MultimodalDataset, sample: Sample, modality: str) -> str | None:
    """The file a sample's modality came from, when known (manifests, Flickr8k images)."""
    files = sample.meta.get("files")
    if isinstance(files, dict) and isinstance(files.get(modality), str):
        return str(Path(files[modality]).resolve())
    root = getattr(dataset, "root", None)
    image = sample.meta.get("image")
    if root is not None and isinstance(image, str) and modality == "image":
        candidate = Path(root) / "images" / image
        if candidate.is_file():
            return str(candidate.resolve())
    return None


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")


def embed_dataset(
    model: JointEmbeddingModel,
    dataset: MultimodalDataset,
    modalities: Sequence[str],
    *,
    limit: int | None = None,
    batch_size: int = 32,
) -> dict[str, tuple[np.ndarray, list[str], list[dict[str, Any]]]]:
    """Embed ``modalities`` of the first ``limit`` examples: name -> (vectors, ids, metadata)."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    schema = dataset.schema.select(list(modalities))
    out: dict[str, tuple[list[np.ndarray], list[str], list[dict[str, Any]]]] = {
        m: ([], [], []) for m in modalities
    }
    model.eval()
    for start in range(0, count, batch_size):
        samples = [dataset[i] for i in range(start, min(count, start + batch_size))]
        batch = collate(samples, schema)
        for m in modalities:
            vectors, ids, meta = out[m]
            keep = [i for i, s in enumerate(samples) if s.modalities.get(m) is not None]
            if not keep:
                continue
            if schema[m].kind is ModalityKind.TEXT:
                texts, owners, rows = [], [], []
                for i in keep:
                    captions = samples[i].meta.get("captions")
                    group = captions if isinstance(captions, list) and captions else None
                    for k, text in enumerate(group or [samples[i].modalities[m]]):
                        texts.append(str(text))
                        owners.append(i)
                        rows.append(f"{samples[i].id}#{k}" if group else samples[i].id)
                mb = ModalityBatch(texts, torch.ones(len(texts), dtype=torch.bool))
                with torch.no_grad():
                    z = model.encode(m, mb)  # (T, D)
                for text, i, item_id in zip(texts, owners, rows, strict=True):
                    ids.append(item_id)
                    meta.append(_meta(dataset, samples[i], m, text))
            else:
                idx = torch.tensor(keep)
                with torch.no_grad():
                    z = model.encode(m, batch[m].index(idx))  # (b, D)
                for i in keep:
                    ids.append(samples[i].id)
                    meta.append(_meta(dataset, samples[i], m, None))
            vectors.append(z.float().numpy())
    return {
        m: (np.concatenate(v) if v else np.zeros((0, model.dim), np.float32), ids, meta)
        for m, (v, ids, meta) in out.items()
    }


def _meta(
    dataset: MultimodalDataset, sample: Sample, modality: str, text: str | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"modality": modality, "example": sample.id}
    path = item_path(dataset, sample, modality)
    if path is not None:
        meta["path"] = path
    if text is not None:
        meta["text"] = text
    if modality != "image" and "image" in sample.modalities:
        image_path = item_path(dataset, sample, "image")
        if image_path is not None:
            meta["image_path"] = image_path
    return meta


def run(args: argparse.Namespace) -> int:
    from polymodal.training.contrastive import load_joint_checkpoint

    _check_positive("--limit", args.limit)
    _check_positive("--batch-size", args.batch_size)
    model, _ = load_joint_checkpoint(args.checkpoint)
    dataset = load_source(args.source, args.split, args.root)
    shared = [m for m in model.modalities if m in dataset.schema]
    if args.modalities is not None:
        for m in args.modalities:
            if m not in model.modalities:
                raise ValueError(
                    f"--modalities: the model has no modality {m!r}; it embeds {model.modalities}."
                )
            if m not in dataset.schema:
                raise ValueError(
                    f"--modalities: the data has no modality {m!r}; it has {dataset.schema.names}."
                )
        shared = list(args.modalities)
    if not shared:
        raise ValueError(
            f"The model embeds {model.modalities} but {args.source!r} has "
            f"{dataset.schema.names}: nothing in common to embed."
        )
    results = embed_dataset(model, dataset, shared, limit=args.limit, batch_size=args.batch_size)
    out = Path(args.output)
    counts: dict[str, int] = {}
    for m, (vectors, ids, meta) in results.items():
        folder = out / m
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", vectors)
        atomic_write_text(folder / "ids.json", json.dumps(ids))
        atomic_write_text(folder / "metadata.json", json.dumps(meta))
        counts[m] = len(ids)
    manifest = {
        "format": EMBEDDINGS_FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "model": model.fingerprint(),
        "model_modalities": model.modalities,
        "dim": model.dim,
        "source": args.source,
        "split": args.split,
        "counts": counts,
    }
    atomic_write_text(out / EMBEDDINGS_FILE, json.dumps(manifest, indent=1) + "\n")
    for m, n in counts.items():
        print(f"{m}: {n} vectors -> {out / m}")
    return 0


def read_embeddings(folder: str | Path) -> dict[str, Any]:
    """The ``embeddings.json`` of a folder written by ``polymodal embed``, checked."""
    path = Path(folder) / EMBEDDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {folder} is not a folder written by `polymodal embed` (or "
            "the run did not finish). Run `polymodal embed CHECKPOINT DATA -o FOLDER` first."
        )
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict) or manifest.get("format") != EMBEDDINGS_FORMAT:
        raise ValueError(f"{path} is not a polymodal embeddings manifest.")
    return manifest
