"""Fixtures of the API tier: the app in this process over ASGI, on a migrated SQLite file, with
a fake of the Temporal facade, and a real git smart-HTTP server for project creation.

Each test module gets its own database and app (module scope); the fake forgets what it saw,
and any failure it was told to play, before every test. Nothing here needs Docker or a
Temporal server.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from kiln.db import make_engine, make_session_factory
from kiln.migrate import upgrade
from kiln.settings import Settings
from testbed.git_server import GitServer
from tests.api.support import WEBHOOK_MAX_BYTES, WORKFLOW_ID_PREFIX, Api, FakeWorkflows


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitServer]:
    with GitServer() as server:
        yield server


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head; each module's app gets a copy."""
    path = tmp_path_factory.mktemp("api-template") / "kiln.db"
    upgrade(f"sqlite:///{path}")
    return path


def api_settings(database_url: str, workspace: Path) -> Settings:
    return Settings(
        database_url=database_url,
        jwt_secret=secrets.token_hex(32),
        allow_local_repos=True,  # the git server listens on 127.0.0.1
        build_network="none",
        workspace_dir=workspace,
        webhook_max_bytes=WEBHOOK_MAX_BYTES,
        cors_origins=[],
        allowed_hosts=["testserver"],  # the client's base URL
        workflow_id_prefix=WORKFLOW_ID_PREFIX,
    )


@asynccontextmanager
async def serving(
    migrated_database: Path, git_server: GitServer, directory: Path, **overrides: Any
) -> AsyncIterator[Api]:
    """The app on its own copy of the database, with `overrides` of the tier's settings."""
    shutil.copyfile(migrated_database, directory / "kiln.db")
    settings = api_settings(f"sqlite:///{directory / 'kiln.db'}", directory / "workspaces")
    settings = settings.model_copy(update=overrides)
    workflows = FakeWorkflows()
    app = create_app(settings, workflows=workflows)
    fastapi_app: FastAPI = app.other_asgi_app
    engine = make_engine(settings.database_url)
    async with fastapi_app.router.lifespan_context(fastapi_app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http, settings, make_session_factory(engine), workflows, git_server)
    engine.dispose()


@pytest.fixture(scope="module")
async def api(
    migrated_database: Path, git_server: GitServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    async with serving(migrated_database, git_server, tmp_path_factory.mktemp("api")) as api:
        yield api


@pytest.fixture(autouse=True)
def workflows(api: Api) -> FakeWorkflows:
    """The app's fake Temporal facade, fresh for this test."""
    api.workflows.reset()
    return api.workflows
