"""Fixtures for the real parts: a Temporal dev server, Docker with a local busybox image, a git
smart-HTTP server, PostgreSQL and SQLite databases, and a running Kiln on top of them.

No fixture skips: a part that is missing fails the tests that need it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from cli.temporal_server import start_dev_server
from kiln.migrate import upgrade
from testbed.databases import create_postgres_database, drop_postgres_database
from testbed.git_server import GitServer
from testbed.images import ensure_busybox_image
from testbed.stack import Stack, free_port, running_stack, stack_settings

DB_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("temporal")
    port = free_port()
    server = start_dev_server(
        state / "temporal.db", port=port, ui_port=None, log_file=state / "temporal.log"
    )
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox(docker_client: docker.DockerClient) -> str:
    return ensure_busybox_image()


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitServer]:
    with GitServer() as server:
        yield server


@pytest.fixture(scope="module", params=DB_BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A freshly migrated database: the module's tests run once on SQLite, once on Postgres."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'kiln.db'}"
        upgrade(url)
        yield url
        return
    name, url = create_postgres_database()
    upgrade(url)
    yield url
    drop_postgres_database(name)


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    """Settings a module's stack has besides `stack_settings`' (a module overrides this
    fixture, e.g. to give its stack a KILN_SECRETS_KEY)."""
    return {}


@pytest.fixture(scope="module")
async def stack(
    db_url: str,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    stack_changes: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    workspace: Path = tmp_path_factory.mktemp("workspaces")
    settings = stack_settings(db_url, temporal_address, workspace).model_copy(update=stack_changes)
    async with running_stack(settings, git_server, busybox) as running:
        yield running
