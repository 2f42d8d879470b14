"""The FastAPI application of ``polymodal serve``: routes, limits, batching, metrics.

:func:`create_app` takes models and indexes already loaded (:class:`Predictor`,
:class:`Searcher`) and an optional sentiment function, so tests build it on tiny ones and
``polymodal serve`` on the user's.  Routes:

* ``GET /``: the page (``static/index.html``, no CDN); ``GET /static/...``: its files.
* ``GET /health``, ``GET /info`` (what is served, for the page), ``GET /metrics``.
* ``POST /predict[?model=NAME]``, ``POST /search[?index=NAME]``, ``POST /sentiment``,
  ``POST /caption`` (an image -> its caption, with a captioning run's
  :class:`~polymodal.captioning.captioner.Captioner`): JSON or multipart; each request is
  decoded in a worker thread, then queued to its model's
  :class:`~polymodal.serve.batcher.Batcher`.
* ``GET /thumbnails/INDEX/PATH``: an image of an index's hits (its own files only).
* ``GET /openapi.json``: the API's schema.  ``/docs`` is off: FastAPI's Swagger UI loads
  its scripts from a CDN, which an offline server cannot reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polymodal.data.modality import ModalityKind
from polymodal.serve.batcher import Batcher, QueueFull
from polymodal.serve.errors import RequestError, error_body, install_handlers
from polymodal.serve.metrics import Metrics
from polymodal.serve.predictor import FILE_KINDS, Predictor
from polymodal.serve.searcher import Searcher
from polymodal.serve.uploads import Upload, from_bytes, from_json

if TYPE_CHECKING:
    from polymodal.captioning.captioner import Captioner

STATIC = Path(__file__).resolve().parent / "static"
SENTIMENT_KINDS = (ModalityKind.VIDEO, ModalityKind.AUDIO)


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches and what it accepts.

    Attributes:
        max_batch: the most requests in one forward pass (1: no batching).
        max_wait_ms: how long a request waits for others to join its batch.
        queue: the most requests waiting per model; one more is a 503.
        max_upload_mb: the largest uploaded file (MiB); larger is a 413.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    queue: int = 256
    max_upload_mb: float = 20.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


SentimentFn = Callable[[Path], dict[str, Any]]


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is a 413 naming ``body``, read
    no further (by its ``Content-Length``, or while it streams in)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send, int(length))
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(seen)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge as exc:
            if not started:
                await self._refuse(send, exc.size)

    async def _refuse(self, send: Send, size: int) -> None:
        body = json.dumps(
            error_body(
                f"body: the request is {size:,} bytes or more, over this server's limit of "
                f"{self.limit:,} bytes (--max-upload-mb). Send smaller files.",
                "body",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Observe:
    """ASGI middleware: each request's route, status and latency into :class:`Metrics`
    (plain ASGI: Starlette's ``BaseHTTPMiddleware`` costs a task group per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(path, status, time.perf_counter() - start)


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _pick(items: Mapping[str, Any], name: str | None, what: str, param: str) -> Any:
    if not items:
        raise RequestError(404, f"{param}: this server serves no {what}.", param)
    if name is None:
        return next(iter(items.values()))
    if name not in items:
        raise RequestError(
            404, f"{param}: no {what} named {name!r}; this server has {sorted(items)}.", param
        )
    return items[name]


async def _read_request(
    request: Request, file_kinds: Mapping[str, ModalityKind], limit: int
) -> tuple[dict[str, Any], dict[str, Upload]]:
    """(fields, uploads) of a JSON or multipart request.  ``file_kinds`` says the kind of
    each field that may hold a file; a JSON file value becomes an :class:`Upload` too."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: dict[str, Upload] = {}
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=16, max_fields=256)
        except Exception as exc:  # malformed multipart
            raise RequestError(400, f"body: not a valid multipart form ({exc}).", "body") from None
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in file_kinds:
                    raise RequestError(
                        400,
                        f"{key}: this field takes no file; files go in {sorted(file_kinds)}.",
                        key,
                    )
                data = await value.read(limit + 1)
                uploads[key] = from_bytes(key, value.filename or "", data, file_kinds[key], limit)
            else:
                fields[key] = value
        return fields, uploads
    if ctype not in ("application/json", ""):
        raise RequestError(
            415,
            f"body: content type {ctype!r} is not accepted; send application/json or "
            "multipart/form-data.",
            "body",
        )
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"body: not valid JSON ({exc}).", "body") from None
    if not isinstance(body, dict):
        raise RequestError(400, "body: expected a JSON object.", "body")
    return body, uploads


def create_app(
    predictors: Sequence[Predictor] = (),
    searchers: Sequence[Searcher] = (),
    *,
    sentiment: SentimentFn | None = None,
    captioner: Captioner | None = None,
    config: ServeConfig | None = None,
) -> FastAPI:
    """The application serving ``predictors``, ``searchers``, ``sentiment`` and
    ``captioner``."""
    config = config or ServeConfig()
    limit = config.max_upload_bytes
    models = {p.name: p for p in predictors}
    indexes = {s.name: s for s in searchers}
    wait = config.max_wait_ms / 1000
    batchers: dict[str, Batcher[Any, Any]] = {}
    for p in predictors:
        batchers[f"predict:{p.name}"] = Batcher(
            p.run_batch,
            max_batch=config.max_batch,
            max_wait_s=wait,
            max_queue=config.queue,
            name=f"predict:{p.name}",
        )
    for s in searchers:
        batchers[f"search:{s.name}"] = Batcher(
            s.run_batch,
            max_batch=config.max_batch,
            max_wait_s=wait,
            max_queue=config.queue,
            name=f"search:{s.name}",
        )
    if sentiment is not None:  # one clip at a time: a clip takes seconds
        batchers["sentiment"] = Batcher(
            lambda paths: [sentiment(p) for p in paths],
            max_batch=1,
            max_wait_s=0,
            max_queue=max(1, min(config.queue, 8)),
            name="sentiment",
        )
    if captioner is not None:  # decoded images, captioned a batch at a time
        batchers["caption"] = Batcher(
            lambda images: _caption_batch(captioner, images),
            max_batch=config.max_batch,
            max_wait_s=wait,
            max_queue=config.queue,
            name="caption",
        )
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for b in batchers.values():
            await b.stop()

    app = FastAPI(
        title="polymodal serve",
        docs_url=None,  # Swagger UI loads from a CDN; /openapi.json stays
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.batchers = batchers
    app.state.metrics = metrics
    install_handlers(app)
    files = max(
        [
            1,
            *(
                len([m for m in p.schema.modalities if m.kind is not ModalityKind.TEXT])
                for p in predictors
            ),
        ]
    )
    app.add_middleware(BodyLimit, limit=files * (limit * 4 // 3 + 4096) + 1024 * 1024)
    app.add_middleware(Observe, metrics=metrics)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def submit(key: str, item: Any) -> Any:
        try:
            return await batchers[key].submit(item)
        except QueueFull:
            raise RequestError(
                503,
                f"the server is busy: {batchers[key].max_queue} requests are queued for "
                f"{key}; retry shortly.",
                None,
                headers={"Retry-After": "1"},
            ) from None

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and what is served."""
        return {
            "status": "ok",
            "models": sorted(models),
            "indexes": sorted(indexes),
            "sentiment": sentiment is not None,
            "caption": captioner is not None,
        }

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """Each model's inputs and classes, each index's query kinds (the page reads it)."""
        return {
            "models": [p.describe() for p in predictors],
            "indexes": [s.describe() for s in searchers],
            "sentiment": sentiment is not None,
            "caption": captioner is not None,
            "max_upload_bytes": limit,
        }

    @app.get("/metrics")
    async def get_metrics() -> dict[str, Any]:
        """Requests per route and status, latency p50/p99, batch sizes, queue depths."""
        return metrics.snapshot(batchers)

    predict_body = {
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "inputs": {
                                "type": "object",
                                "description": "modality -> text, numbers, or a file as "
                                "a data: URL or {filename, base64}",
                            }
                        },
                    }
                },
                "multipart/form-data": {"schema": {"type": "object"}},
            }
        }
    }

    @app.post("/predict", openapi_extra=predict_body)
    async def predict(request: Request, model: str | None = None) -> dict[str, Any]:
        """Class probabilities and label (or the regression value) of one example."""
        predictor: Predictor = _pick(models, model, "models", "model")
        kinds = {
            s.name: s.kind
            for s in predictor.schema.modalities
            if s.kind in (*FILE_KINDS, ModalityKind.FEATURES)
        }
        fields, uploads = await _read_request(request, kinds, limit)
        inputs = fields.get("inputs", {}) if "inputs" in fields else fields
        multipart = request.headers.get("content-type", "").startswith("multipart/")
        if multipart and isinstance(inputs, str):  # inputs may come as one JSON field
            try:
                inputs = json.loads(inputs)
            except json.JSONDecodeError:
                raise RequestError(400, "inputs: not valid JSON.", "inputs") from None
        if not isinstance(inputs, dict):
            raise RequestError(400, "inputs: expected an object of modality -> value.", "inputs")
        inputs = {k: v for k, v in inputs.items() if k != "model"}
        if uploads or any(_holds_file(v) for v in inputs.values()):
            sample = await asyncio.to_thread(predictor.parse, inputs, uploads)  # decoding
        else:  # text and numbers: cheap, and a thread hop would cost more than it saves
            sample = predictor.parse(inputs, uploads)
        result: dict[str, Any] = await submit(f"predict:{predictor.name}", sample)
        return {"model": predictor.name, **result}

    search_body = {
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string"},
                            "image": {"description": "a data: URL or {filename, base64}"},
                            "audio": {"description": "a data: URL or {filename, base64}"},
                            "k": {"type": "integer", "default": 10},
                        },
                    }
                },
                "multipart/form-data": {"schema": {"type": "object"}},
            }
        }
    }

    @app.post("/search", openapi_extra=search_body)
    async def search(request: Request, index: str | None = None) -> dict[str, Any]:
        """The ``k`` best items of an index for a text, image or audio query."""
        searcher: Searcher = _pick(indexes, index, "indexes", "index")
        kinds = {k: ModalityKind(k) for k in ("image", "audio")}
        fields, uploads = await _read_request(request, kinds, limit)
        for kind in ("image", "audio"):
            if fields.get(kind) is not None:
                uploads[kind] = from_json(kind, fields[kind], kinds[kind], limit)
        k: Any = fields.get("k", 10)
        if isinstance(k, str) and k.strip().isdigit():
            k = int(k)
        if uploads:
            query = await asyncio.to_thread(searcher.parse, fields.get("text"), uploads, k)
        else:
            query = searcher.parse(fields.get("text"), uploads, k)
        result: dict[str, Any] = await submit(f"search:{searcher.name}", query)
        return result

    @app.post("/sentiment")
    async def analyse_sentiment(request: Request) -> dict[str, Any]:
        """The sentiment timeline of an uploaded clip (field ``video``: video or audio)."""
        if sentiment is None:
            raise RequestError(
                404,
                "sentiment: this server does not analyse sentiment; start it with "
                "`polymodal serve ... --sentiment`.",
                "video",
            )
        kinds = {"video": ModalityKind.VIDEO, "audio": ModalityKind.AUDIO}
        fields, uploads = await _read_request(request, kinds, limit)
        for kind in kinds:
            if fields.get(kind) is not None:
                uploads[kind] = from_json(kind, fields[kind], kinds[kind], limit)
        if len(uploads) != 1:
            raise RequestError(
                400,
                "video: upload one clip, a video as 'video' or an audio file as 'audio'.",
                "video",
            )
        (upload,) = uploads.values()
        with _temporary(upload) as path:
            result: dict[str, Any] = await submit("sentiment", path)
        return result

    @app.post("/caption")
    async def caption(request: Request) -> dict[str, Any]:
        """The caption of an uploaded image (field ``image``)."""
        if captioner is None:
            raise RequestError(
                404,
                "caption: this server captions no images; serve a captioning run "
                "(`polymodal serve runs/NAME` of a task: captioning run).",
                "image",
            )
        kinds = {"image": ModalityKind.IMAGE}
        fields, uploads = await _read_request(request, kinds, limit)
        if fields.get("image") is not None:
            uploads["image"] = from_json("image", fields["image"], ModalityKind.IMAGE, limit)
        if "image" not in uploads:
            raise RequestError(400, "image: upload one image as 'image'.", "image")
        size = captioner.encoder_config.image_size
        with _temporary(uploads["image"]) as path:
            image = await asyncio.to_thread(_decode_upload, path, size)
        return {"caption": await submit("caption", image)}

    @app.get("/thumbnails/{index}/{path:path}")
    async def thumbnail(index: str, path: str) -> FileResponse:
        """An image of one of the index's items; anything else is a 404."""
        searcher = indexes.get(index)
        file = None if searcher is None else searcher.thumbnail(path)
        if file is None:
            raise RequestError(404, "thumbnail: no such image in this index.", "path")
        return FileResponse(file)

    return app


def _decode_upload(path: Path, size: int) -> Any:
    """An uploaded image as the captioner's input; a damaged one is the client's 400."""
    from polymodal.data.decode import decode_image
    from polymodal.data.decode.errors import DecodeError

    try:
        return decode_image(path, size=size, where="image")
    except DecodeError as exc:
        raise RequestError(400, f"image: {exc}", "image") from None


def _caption_batch(captioner: Captioner, images: list[Any]) -> list[str]:
    import torch

    return captioner.caption_tensors(torch.stack(images))


def _holds_file(value: Any) -> bool:
    """Whether a JSON input value is a file to decode (a data: URL or {filename, base64})."""
    return isinstance(value, dict) or (isinstance(value, str) and value.startswith("data:"))


@contextlib.contextmanager
def _temporary(upload: Upload) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="polymodal-serve-") as tmp:
        path = Path(tmp) / f"clip{upload.suffix}"
        path.write_bytes(upload.data)
        yield path
