"""Request errors: every refusal is a 4xx JSON ``{"error": ..., "field": ...}``.

Handlers raise :class:`RequestError` naming the field at fault; :func:`install_handlers`
turns it (and FastAPI's own validation and routing errors) into that JSON, and turns any
other exception into a generic 500 whose traceback goes to the server's log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

logger = logging.getLogger("polymodal.serve")

INTERNAL = "internal server error; the server's log has the details"


class RequestError(Exception):
    """A bad request: HTTP ``status`` with ``message``, naming ``field`` (or ``None``).

    ``headers`` are added to the response (``Retry-After`` on a 503).
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_body(message: str, field: str | None) -> dict[str, Any]:
    return {"error": message, "field": field}


def install_handlers(app: FastAPI) -> None:
    """Map every exception a request can raise to the JSON error format."""

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.message, exc.field), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        message = f"{field or 'request'}: {first.get('msg', 'invalid request')}"
        return JSONResponse(error_body(message, field), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), None),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(INTERNAL, None), status_code=500)
