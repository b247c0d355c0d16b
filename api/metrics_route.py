"""The API's own Prometheus figures, `GET /metrics`, and the middleware that observes every
request: its route (the template, never the raw path with ids), status and duration, and the
`requestId` (a sane incoming `X-Request-ID`, else a new one; echoed in the answer) that every
log line written while answering it carries, with the `buildId` or `projectId` of its path.

HTTP, socket and event-delivery figures are this process's own: scraped per instance, summed
over instances. The build figures (`kiln.metrics`) come from the database or from the process
that committed each change, so several API processes never count a build twice. Nothing in
/metrics is per user: no ids, no names, no paths with ids.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client import Histogram as PromHistogram
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.limits import send_error
from kiln.logconfig import add_context_source, log_context

METRICS_PATH = "/metrics"
# Paths answered before the routes: labelled as they are.
FIXED_ROUTES = frozenset({METRICS_PATH, "/healthz", "/readyz"})
SOCKETIO_ROUTE = "/socket.io/"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID_HEADER = b"x-request-id"
# What an incoming request id may look like to be kept (a uuid, a hex or a trace id).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    """The API's figures: this process's, or with several processes on the port, those of
    every process (`exposed`, kiln.metrics.shared_registry)."""

    def __init__(self, registry: CollectorRegistry, exposed: CollectorRegistry) -> None:
        self.registry = registry
        # What GET /metrics shows: `registry` itself unless the processes share their figures.
        self.exposed = exposed
        self.requests = Counter(
            "kiln_http_requests",
            "HTTP requests answered by the API, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = PromHistogram(
            "kiln_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            registry=registry,
        )
        # Set on every connect and disconnect; with several API processes, summed over the
        # live ones (kiln.metrics.shared_registry).
        self.sockets = Gauge(
            "kiln_socket_connections",
            "Socket.io connections to the API",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.event_delivery = PromHistogram(
            "kiln_event_delivery_seconds",
            "Time from a change's commit to its Socket.io event being emitted",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )

    def observe_delivery(self, seconds: float) -> None:
        self.event_delivery.observe(seconds)

    def count_sockets(self, count: int) -> None:
        """The sockets this process now holds (past authentication)."""
        self.sockets.set(count)


class RouteLabels:
    """The route template a request matched: `/api/build/{buildId}`, never `/api/build/7`.

    Read after the request from what the router recorded (`scope["route"]`); paths the router
    recorded nothing for (mounts, plain routes) are matched against the app's own routes."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def label(self, scope: Scope, original: Scope) -> str:
        path: str = original.get("path", "")
        if path in FIXED_ROUTES:
            return path
        if path == SOCKETIO_ROUTE.rstrip("/") or path.startswith(SOCKETIO_ROUTE):
            return SOCKETIO_ROUTE
        template = getattr(scope.get("route"), "path_format", None)
        if isinstance(template, str) and template:
            return template
        partial = None
        for route in self._app.router.routes:
            if not isinstance(route, Route | Mount):
                continue
            found, _child = route.matches(original)
            if found is Match.FULL:
                return route.path_format
            if found is Match.PARTIAL and partial is None:
                partial = route.path_format  # the path exists, not with this method (405)
        return partial or UNMATCHED


# The request being answered, for its log lines' ids (read when a line is written: by then
# the router has put the path parameters in it).
_REQUEST: ContextVar[Scope | None] = ContextVar("kiln_request_scope", default=None)


def request_log_ids(_record: logging.LogRecord) -> dict[str, Any] | None:
    """`buildId` / `projectId` of the path of the request being answered (kiln.logconfig)."""
    scope = _REQUEST.get()
    if scope is None:
        return None
    params = scope.get("path_params") or {}
    return {
        "buildId": _positive_id(params, "buildId", "build_id"),
        "projectId": _positive_id(params, "projectId", "project_id"),
    }


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1").strip()
            if SANE_REQUEST_ID.fullmatch(candidate):
                return str(candidate)
            break
    return uuid.uuid4().hex


def _positive_id(params: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, str) and value.isdigit() and len(value) < 19 and int(value) > 0:
            return int(value)
    return None


class Observed:
    """Outermost middleware: request id and ids for the logs, and the HTTP figures."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: RouteLabels) -> None:
        self._app = app
        self._metrics = metrics
        self._routes = routes
        add_context_source(request_log_ids)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        token = _REQUEST.set(scope)
        try:
            with log_context(request_id=request_id):
                if scope["type"] == "websocket":  # a socket's lines carry the id it opened with
                    await self._app(scope, receive, send)
                else:
                    await self._observe(scope, receive, send, request_id)
        finally:
            _REQUEST.reset(token)

    async def _observe(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        original = {
            "type": scope["type"],
            "path": scope.get("path", ""),
            "root_path": scope.get("root_path", ""),
            "method": scope.get("method", ""),
        }
        status = 500  # unless an answer starts
        started = time.perf_counter()
        header = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != REQUEST_ID_HEADER
                ]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, header)]}
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            route = self._routes.label(scope, original)
            method = str(original["method"]).upper()
            method = method if method in METHODS else "OTHER"
            self._metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self._metrics.request_seconds.labels(route=route).observe(time.perf_counter() - started)


async def metrics_endpoint(
    registry: CollectorRegistry, scope: Scope, receive: Receive, send: Send
) -> None:
    """`GET /metrics`: the registry in Prometheus' text format (no auth: nothing per user)."""
    if scope.get("method") not in ("GET", "HEAD"):
        await send_error(send, 405, "Method Not Allowed")
        return
    # Collectors query the database: off the event loop.
    body = await asyncio.to_thread(generate_latest, registry)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", CONTENT_TYPE_LATEST.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
