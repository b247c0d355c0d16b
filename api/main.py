"""The ASGI application: FastAPI for REST and python-socketio on the same port."""

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
from api.limits import BodyLimit
from api.pubsub import DatabaseManager
from api.routes import auth, builds, history, projects, webhooks
from api.schemas import ERROR_TEXT, ErrorBody
from api.sockets import create_socket_server
from api.trusted_hosts import TrustedHosts, allowed_host_names
from api.web import mount_dashboard
from kiln.db import make_engine, make_session_factory
from kiln.settings import Settings, get_settings
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
    if not settings.jwt_secret:
        raise RuntimeError("KILN_JWT_SECRET is not set: the API refuses to start without it")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    manager = DatabaseManager(settings.database_url, sessions)
    sio = create_socket_server(settings, sessions, manager)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.workflows = workflows or TemporalWorkflows(
            await connect_temporal(settings), settings
        )
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
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    errors.install(app)
    for router in (auth.router, projects.router, history.router, builds.router, webhooks.router):
        app.include_router(router)
    mount_dashboard(app)
    refine_openapi(app)
    return KilnApp(sio, app, settings)


class KilnApp(socketio.ASGIApp):  # type: ignore[misc]
    """Socket.io and REST on one port, behind the host check and the body cap (in that order:
    both come before anything reads the request). The webhook reads its own body, with its own
    limit, after checking the signature header. `other_asgi_app` is the FastAPI app."""

    def __init__(self, sio: socketio.AsyncServer, app: FastAPI, settings: Settings) -> None:
        super().__init__(sio, other_asgi_app=app)
        capped = BodyLimit(
            super().__call__,
            settings.json_max_bytes,
            exempt_prefixes=(f"{webhooks.router.prefix}/",),
        )
        self._guarded = TrustedHosts(capped, allowed_host_names(settings))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send)


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
