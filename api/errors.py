"""Every error answers `{"message": "..."}`; invalid input is a 400, never a 422. The core's
RequestErrors and the queueing failures map to their status codes here, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from kiln.errors import Conflict, Forbidden, NotFound, RequestError
from kiln.quotas import LimitReached

REQUEST_ERRORS: dict[type[RequestError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    LimitReached: 429,
}


class QueueingFailed(Exception):
    """The build rows could not be written (nothing was queued): a 500 with this message."""


class NotQueued(Exception):
    """Some workflow could not be started (those builds are `failed`): a 503."""

    def __init__(self, *, started_any: bool) -> None:
        super().__init__("Build could not be queued: the workflow service is unavailable")
        self.started_any = started_any


def message(status: int, text: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"message": text}, headers=headers)


def _describe(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return "Request body is not valid JSON"
    location = tuple(error.get("loc", ()))
    if location[:1] == ("path",) and len(location) == 2:
        return f"{location[1]} must be a positive integer"
    where = [str(part) for part in location if part not in ("body", "path", "query")]
    text = str(error.get("msg", "invalid value"))
    return f"{'.'.join(where)}: {text}" if where else text


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette's 405 names only the first
    route's, but each method of a path is a route of its own here)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            matched, _scope = route.matches(request.scope)
            if matched is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return message(exc.status_code, str(exc.detail), headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return message(400, _describe(errors[0]) if errors else "Invalid request")

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, exc: RequestError) -> JSONResponse:
        retry_after = exc.retry_after if isinstance(exc, LimitReached) else None
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return message(REQUEST_ERRORS.get(type(exc), 400), str(exc), headers)

    @app.exception_handler(QueueingFailed)
    async def queueing_failed(_request: Request, exc: QueueingFailed) -> JSONResponse:
        return message(500, str(exc))

    @app.exception_handler(NotQueued)
    async def not_queued(_request: Request, exc: NotQueued) -> JSONResponse:
        return message(503, str(exc))
