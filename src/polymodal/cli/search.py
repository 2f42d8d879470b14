"""``polymodal search INDEX --text "..." | --image FILE | --audio FILE``: query an index.

The query is embedded with the checkpoint that built the index (recorded in
``INDEX/source.json``; ``--checkpoint`` overrides it) and the ``--k`` best items are
printed as ``rank  id  score  path``.  ``--html PAGE`` also writes an HTML page showing
the hits that are images (``<img>`` tags with paths relative to the page when possible).

Errors are one line each (exit status 2): a query modality the model or the index lacks,
an index from another model or with a different dimension, an incomplete or damaged index
folder (each file named, ``source.json`` included), a query file that does not decode.
"""

from __future__ import annotations

import argparse
import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polymodal.cli.index_cmd import SOURCE_FILE

if TYPE_CHECKING:  # these import torch: loaded by the verb, not the parser
    from polymodal.data.modality import ModalityKind
    from polymodal.data.sample import ModalityBatch
    from polymodal.joint.model import JointEmbeddingModel
    from polymodal.retrieval.index import SearchResult


def add_parser(subparsers: Any) -> None:
    """Add ``search`` to the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "search",
        help="search an index with a text, image or audio query",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("index", metavar="INDEX", help="a folder from `polymodal index build`")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", default=None, help="a text query")
    query.add_argument("--image", default=None, metavar="FILE", help="an image file query")
    query.add_argument("--audio", default=None, metavar="FILE", help="an audio file query")
    p.add_argument("--k", type=int, default=10, help="hits to return (default 10)")
    p.add_argument("--html", default=None, metavar="PAGE", help="write the hits as HTML")
    p.add_argument(
        "--checkpoint", default=None, help="the model (default: the one recorded in the index)"
    )
    p.add_argument(
        "--modality",
        default=None,
        help="the model modality of the query (default: the model's only one of that kind)",
    )
    p.set_defaults(func=run)


def _query_modality(model: JointEmbeddingModel, kind: ModalityKind, name: str | None) -> str:
    """The model modality that embeds a query of ``kind``."""
    if name is not None:
        if name not in model.modalities:
            raise ValueError(
                f"--modality {name!r}: the model has no such modality; it embeds "
                f"{model.modalities}."
            )
        return name
    names = [m for m in model.modalities if model.config[m].spec.kind is kind]
    if not names:
        kinds = {m: model.config[m].spec.kind.value for m in model.modalities}
        raise ValueError(
            f"The model cannot embed a {kind.value} query: its modalities are {kinds}. "
            f"Query with one of those kinds, or use a model trained with a {kind.value} "
            "modality."
        )
    if len(names) > 1:
        raise ValueError(
            f"The model has several {kind.value} modalities {names}; pick one with --modality."
        )
    return names[0]


def _query_batch(
    model: JointEmbeddingModel, modality: str, args: argparse.Namespace
) -> ModalityBatch:
    import torch

    from polymodal.data.modality import ModalityKind
    from polymodal.data.sample import ModalityBatch

    spec = model.config[modality].spec
    present = torch.ones(1, dtype=torch.bool)
    if spec.kind is ModalityKind.TEXT:
        if not args.text or not args.text.strip():
            raise ValueError("--text is empty; pass the words to search for.")
        return ModalityBatch([args.text], present)
    if spec.kind is ModalityKind.IMAGE:
        from polymodal.data.decode import decode_image

        size = (spec.shape[1], spec.shape[2]) if spec.shape is not None else None
        image = decode_image(args.image, size=size, where="--image")  # (3, H, W)
        return ModalityBatch(image[None], present)
    if spec.kind is ModalityKind.AUDIO:
        from polymodal.data.decode import decode_audio

        rate = int(spec.sample_rate) if spec.sample_rate is not None else None
        wave = decode_audio(args.audio, sample_rate=rate, where="--audio")  # (T,)
        length = torch.tensor([wave.shape[0]])
        mask = torch.ones(1, wave.shape[0], dtype=torch.bool)
        return ModalityBatch(wave[None], present, lengths=length, mask=mask)
    raise ValueError(f"Queries of kind {spec.kind.value!r} are not supported by search.")


def _relative(path: str, page: Path) -> str:
    """``path`` relative to the page's folder, neither resolved through symbolic links (so
    the page and its images can be moved together, and links keep working)."""
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(page.parent))
    except ValueError:  # another drive (Windows)
        return Path(os.path.abspath(path)).as_uri()


def write_html(page: str | Path, query: str, result: SearchResult, modality: str) -> Path:
    """An HTML page of the hits of the first query: images shown, others listed."""
    out = Path(page)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, (item_id, meta, score) in enumerate(
        zip(result.ids[0], result.metadata[0], result.scores[0].tolist(), strict=False), 1
    ):
        path = meta.get("path") if modality == "image" else meta.get("image_path")
        head = f"<b>{rank}.</b> {html.escape(item_id)} <span class='score'>{score:.3f}</span>"
        lines = [str(meta["text"])] if meta.get("text") else []
        lines += [str(c) for c in meta.get("captions", [])]
        text = "".join(f"<li>{html.escape(t)}</li>" for t in lines)
        img = (
            f'<img src="{html.escape(_relative(str(path), out))}" alt="{html.escape(item_id)}">'
            if path
            else ""
        )
        rows.append(
            f"<figure>{img}<figcaption>{head}"
            + (f"<ul>{text}</ul>" if text else "")
            + "</figcaption></figure>"
        )
    body = "\n".join(rows)
    style = (
        "body{font-family:sans-serif;margin:1.5em}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:14px}"
        "figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}"
        "img{width:100%;height:200px;object-fit:contain;background:#f6f6f6}"
        "figcaption{font-size:13px}ul{margin:.3em 0;padding-left:1.1em;color:#444}"
        ".score{float:right;color:#666}"
    )
    out.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>polymodal search: {html.escape(query)}</title><style>{style}</style></head>\n"
        f"<body>\n<h1>{html.escape(query)}</h1>\n<div class='grid'>\n{body}\n</div>\n"
        "</body></html>\n",
        encoding="utf-8",
    )
    return out


def _recorded_checkpoint(folder: Path) -> tuple[Path, str]:
    """``INDEX/source.json`` and the checkpoint it names, checked: a missing, empty,
    undecodable or modified file is named, with the fix."""
    from polymodal.checkpoint_files import CheckpointError, read_json_object

    source = folder / SOURCE_FILE
    fix = "Pass --checkpoint, or build the index again with `polymodal index build`."
    if not source.is_file():
        raise FileNotFoundError(
            f"The index folder {folder} is incomplete: {SOURCE_FILE} (which names the "
            f"checkpoint that embedded it) is missing. {fix}"
        )
    checkpoint = read_json_object(source, fix).get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint.strip():
        raise CheckpointError(
            f"{source}: 'checkpoint' must be the path of the checkpoint that embedded the "
            f"index, got {checkpoint!r:.100}; the file was modified. {fix}"
        )
    return source, checkpoint


def run(args: argparse.Namespace) -> int:
    import torch

    from polymodal.data.modality import ModalityKind
    from polymodal.joint.checkpoint import load_joint_checkpoint
    from polymodal.retrieval.index import MANIFEST_FILE, load_index

    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}.")
    folder = Path(args.index)
    if not (folder / MANIFEST_FILE).is_file():
        load_index(folder)  # raises the explanatory FileNotFoundError
    if args.checkpoint is not None:
        model, _ = load_joint_checkpoint(args.checkpoint)
    else:
        source, checkpoint = _recorded_checkpoint(folder)
        try:
            model, _ = load_joint_checkpoint(checkpoint)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{source} names the checkpoint {checkpoint!r}, which cannot be loaded: {exc} "
                "If it was moved, pass --checkpoint NEW_PATH."
            ) from None
    index = load_index(folder, expect_model=model.fingerprint())
    if args.text is not None:
        kind, query = ModalityKind.TEXT, args.text
    elif args.image is not None:
        kind, query = ModalityKind.IMAGE, args.image
    else:
        kind, query = ModalityKind.AUDIO, args.audio
    modality = _query_modality(model, kind, args.modality)
    batch = _query_batch(model, modality, args)
    with torch.no_grad():
        z = model.encode(modality, batch)  # (1, D)
    result = index.search(z, args.k, modality=modality)
    print(f"{'rank':>4}  id  score  path")
    for rank, (item_id, meta, score) in enumerate(
        zip(result.ids[0], result.metadata[0], result.scores[0].tolist(), strict=False), 1
    ):
        path = meta.get("path") or meta.get("image_path") or ""
        print(f"{rank:>4}  {item_id}  {score:.4f}  {path}")
    if args.html is not None:
        page = write_html(args.html, query, result, index.modality or "")
        print(f"wrote {page}")
    return 0
