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
from temporalio.client import Client

from api import errors
from api.pubsub import DatabaseManager
from api.routes import auth, builds, projects, webhooks
from api.sockets import create_socket_server
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
    for router in (auth.router, projects.router, builds.router, webhooks.router):
        app.include_router(router)
    return socketio.ASGIApp(sio, other_asgi_app=app)
