"""The ASGI application: FastAPI for REST and python-socketio on the same port, with the
operator's endpoints beside them: `/healthz` and `/readyz` (api.health), `/metrics`
(api.metrics_route), and a request id on every answer and every log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import socketio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send
from temporalio.client import Client

from api import errors
from api.health import PATHS as HEALTH_PATHS
from api.health import Readiness, health_endpoint
from api.limits import BodyLimit
from api.metrics_route import METRICS_PATH, ApiMetrics, Observed, RouteLabels, metrics_endpoint
from api.routes import (
    auth,
    builds,
    config,
    github_token,
    history,
    hooks,
    projects,
    secrets,
    tokens,
    webhooks,
)
from api.schemas import ERROR_TEXT, ErrorBody
from api.sockets import SocketManager, create_socket_server
from api.startup import check_startup
from api.trusted_hosts import TrustedHosts, allowed_host_names
from api.web import mount_dashboard
from kiln.db import make_engine, make_session_factory
from kiln.metrics import BuildCounts, BuildMetrics, new_registry, shared_dir, shared_registry
from kiln.settings import Settings, get_settings
from kiln.visibility import BuildVisibility
from workflows.client import TemporalWorkflows, Workflows

log = logging.getLogger(__name__)
CONNECT_ATTEMPTS = 30


async def connect_temporal(settings: Settings) -> Client:
    """Connect, waiting for a Temporal server that is still starting (as under `kiln dev`)."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace
            )
        except RuntimeError as exc:
            if attempt == CONNECT_ATTEMPTS:
                raise
            log.warning("Temporal at %s not reachable yet (%s)", settings.temporal_address, exc)
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


def create_app(settings: Settings | None = None, workflows: Workflows | None = None) -> Any:
    """The ASGI app: REST and Socket.io. Without `workflows` it connects to Temporal at start
    (tests of the API hand in a fake)."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine, workflow_id_prefix=settings.workflow_id_prefix)
    check_startup(settings, sessions)
    registry = new_registry()
    counts = BuildCounts(sessions)
    shared = shared_dir()  # several API processes on the port: show all their figures
    if shared is None:
        registry.register(counts)
    exposed = registry if shared is None else shared_registry(shared, counts)
    metrics = ApiMetrics(registry, exposed)
    BuildMetrics(registry).watch(sessions)
    manager = SocketManager(settings.database_url, sessions, metrics.observe_delivery)
    sio = create_socket_server(settings, sessions, manager, metrics.count_sockets)
    temporal: list[Client] = []
    readiness = Readiness(engine, manager, lambda: temporal[0] if temporal else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if workflows is None:
            temporal.append(await connect_temporal(settings))
            app.state.workflows = TemporalWorkflows(
                temporal[0], settings, BuildVisibility(sessions)
            )
        else:
            app.state.workflows = workflows
        # Listen before serving: a client that connects and then queues a build must not miss
        # the build's first event.
        sio.manager_initialized = True
        manager.initialize()
        await asyncio.wait_for(manager.ready.wait(), timeout=30)
        yield
        manager.thread.cancel()
        engine.dispose()

    app = FastAPI(title="Kiln", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.sio = sio
    app.state.manager = manager
    app.state.metrics = metrics
    app.state.readiness = readiness
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    errors.install(app)
    # FastAPI tries routes in order: the hottest read's router first (no other router's paths
    # start with /api/build, so what matches is the same).
    routers = [builds, auth, projects, secrets, github_token, hooks, history, webhooks]
    routers += [tokens, config]
    for module in routers:
        app.include_router(module.router)
    mount_dashboard(app)
    refine_openapi(app)
    return KilnApp(sio, app, settings, metrics, readiness)


class KilnApp(socketio.ASGIApp):  # type: ignore[misc]
    """Socket.io and REST on one port, behind the host check and the body cap (in that order:
    both come before anything reads the request). The webhook reads its own body, with its own
    limit, after checking the signature header. `other_asgi_app` is the FastAPI app.

    Outermost, `Observed` gives each request its id and counts it. The health probes are
    answered before the host check (orchestrators send any `Host`); `/metrics` after it."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        app: FastAPI,
        settings: Settings,
        metrics: ApiMetrics,
        readiness: Readiness,
    ) -> None:
        super().__init__(sio, other_asgi_app=app)
        self._readiness = readiness
        self._registry = metrics.exposed
        capped = BodyLimit(
            super().__call__,
            settings.json_max_bytes,
            exempt_prefixes=(f"{webhooks.router.prefix}/",),
        )
        self._guarded = TrustedHosts(self._metrics_or(capped), allowed_host_names(settings))
        self._observed = Observed(self._route, metrics, RouteLabels(app))

    def _metrics_or(self, app: Any) -> Any:
        async def route(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == METRICS_PATH:
                await metrics_endpoint(self._registry, scope, receive, send)
            else:
                await app(scope, receive, send)

        return route

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in HEALTH_PATHS:
            await health_endpoint(self._readiness, scope, receive, send)
        else:
            await self._guarded(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._observed(scope, receive, send)


def refine_openapi(app: FastAPI) -> None:
    """Make /openapi.json say what the API answers: every route that takes a body may answer
    413 (BodyLimit), and none answers FastAPI's 422 (invalid input is a 400, api.errors)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()  # cached by FastAPI in app.openapi_schema: changed once, here
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
        too_large = {
            "description": ERROR_TEXT[413],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                operation.get("responses", {}).pop("422", None)
                if "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault("413", too_large)
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
