"""``polymodal serve RUN_OR_INDEX [...]``: serve trained runs and search indexes over HTTP.

Each argument is a supervised run (or checkpoint) folder from ``polymodal train``, served at
``POST /predict``, or an index folder from ``polymodal index build``, served at
``POST /search`` (with ``?model=NAME`` / ``?index=NAME``, the folder's name, when there are
several), or a captioning run (``task: captioning``), served at ``POST /caption`` (an
image in field ``image`` -> ``{"caption": ...}``).  ``--sentiment`` also serves ``POST /sentiment`` (a clip -> the timeline of
``polymodal sentiment``; its models train into the cache on first use).  The page at ``/``
searches, predicts and plots sentiment; ``/health``, ``/info``, ``/metrics`` and
``/openapi.json`` describe the server.

Safe by default: bound to 127.0.0.1 (``--host 0.0.0.0`` exposes it, with a warning);
uploads over ``--max-upload-mb`` are refused (413), files of the wrong type too (415);
thumbnails come only from an index's own images; errors are JSON naming the field and
never hold a traceback.  Concurrent requests are batched (``--max-batch``,
``--max-wait-ms``); past ``--queue`` waiting requests the server answers 503 with
``Retry-After``.  Forward passes use ``--threads`` torch threads (default: the cores but
one, left to the event loop).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: Any) -> None:
    """Add ``serve`` to the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "serve",
        help="serve runs (/predict) and indexes (/search) over HTTP, with a page",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="RUN_OR_INDEX", help="run or index folders")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--max-batch", type=int, default=32, help="requests per forward pass")
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="wait for a batch to fill (default 5)"
    )
    p.add_argument("--queue", type=int, default=256, help="waiting requests before 503")
    p.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest uploaded file (default 20)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for the forward passes (default: the cores but one, which the "
        "event loop keeps for reading requests; at least 1)",
    )
    p.add_argument("--sentiment", action="store_true", help="also serve POST /sentiment")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    for flag, value, low in (
        ("--max-batch", args.max_batch, 1),
        ("--queue", args.queue, 1),
        ("--port", args.port, 0),
    ):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}.")
    if not args.max_wait_ms >= 0:
        raise ValueError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}.")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}.")


def _names(paths: list[str]) -> list[str]:
    """Each folder's name, made unique with ``-2``, ``-3``..."""
    out: list[str] = []
    for p in paths:
        base = Path(p).resolve().name or "model"
        if base in ("best", "last") and Path(p).resolve().parent.name == "checkpoints":
            base = Path(p).resolve().parents[1].name
        name, n = base, 2
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out.append(name)
    return out


def build(args: argparse.Namespace) -> Any:
    """The application ``args`` describe (loads every run and index)."""
    from polymodal.device import resolve_device
    from polymodal.inference import load_trained
    from polymodal.retrieval.index import MANIFEST_FILE
    from polymodal.serve.app import ServeConfig, create_app
    from polymodal.serve.predictor import Predictor
    from polymodal.serve.searcher import Searcher

    _check(args)
    device = str(resolve_device(args.device, "--device"))
    config = ServeConfig(args.max_batch, args.max_wait_ms, args.queue, args.max_upload_mb)
    predictors, searchers, captioners = [], [], []
    for path, name in zip(args.paths, _names(args.paths), strict=True):
        folder = Path(path)
        if not folder.exists():
            raise FileNotFoundError(
                f"{path} does not exist; pass a run folder (polymodal train) or an index "
                "folder (polymodal index build)."
            )
        if (folder / MANIFEST_FILE).is_file():
            searchers.append(Searcher(folder, name, device))
        elif _is_captioning(folder):
            from polymodal.captioning.captioner import load_captioner

            captioners.append(load_captioner(folder, device))
        else:
            trained = load_trained(folder)
            predictors.append(Predictor(trained, name, device, config.max_upload_bytes))
    if len(captioners) > 1:
        raise ValueError(
            f"serve takes one captioning run (POST /caption); got {len(captioners)}. Pass one."
        )
    sentiment = _sentiment() if args.sentiment else None
    captioner = captioners[0] if captioners else None
    return create_app(
        predictors, searchers, sentiment=sentiment, captioner=captioner, config=config
    )


def _is_captioning(folder: Path) -> bool:
    """Whether ``folder`` is a ``task: captioning`` run or checkpoint (``POST /caption``)."""
    from polymodal.captioning.captioner import CAPTIONER_FILE
    from polymodal.checkpoint import resolve_checkpoint

    try:
        return (resolve_checkpoint(folder) / CAPTIONER_FILE).is_file()
    except FileNotFoundError:
        return False


def _sentiment() -> Any:
    """``POST /sentiment``'s function: the models of ``polymodal sentiment``, loaded once."""
    import json

    from polymodal.apps import sentiment as app
    from polymodal.featurize.pipeline import FeaturizeConfig, Featurizer

    models = app.load_models(None, None)
    featurizer = Featurizer(FeaturizeConfig())

    def analyse(path: Path) -> dict[str, Any]:
        rows = app.analyse(path, models, featurizer, None)
        result: dict[str, Any] = json.loads(app.to_json(rows, path.name))
        return result

    return analyse


def forward_threads(requested: int | None) -> int:
    """Torch threads for the forward passes: ``requested``, or the usable cores but one.

    The event loop reads, decodes and answers requests while a batch runs; torch threads on
    every core would spin against it (and against a load client on the same machine), and a
    starved loop hands the batcher small batches.
    """
    if requested is not None:
        if isinstance(requested, bool) or requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}.")
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from polymodal.cli import setup_logging

    setup_logging()
    torch.set_num_threads(forward_threads(args.threads))
    if args.host not in LOCAL_HOSTS:
        print(
            f"polymodal serve: warning: --host {args.host} makes the server reachable from "
            "other machines; it has no authentication. Bind to 127.0.0.1 unless you mean to.",
            file=sys.stderr,
        )
    app = build(args)
    logging.getLogger("polymodal.serve").info("serving on http://%s:%d/", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
