"""Fixtures for the real parts: a Temporal dev server, Docker with a local busybox image, a git
smart-HTTP server, PostgreSQL and SQLite databases, and a running Kiln on top of them.

No fixture skips: a part that is missing fails the tests that need it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from kiln.migrate import upgrade
from kiln.temporal_server import start_dev_server
from tests.support.git_server import GitServer
from tests.support.images import ensure_busybox_image
from tests.support.stack import Stack, free_port, running_stack, test_settings

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
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


def _create_postgres_database() -> tuple[str, str]:
    name = f"kiln_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return name, url


def _drop_postgres_database(name: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
    name, url = _create_postgres_database()
    upgrade(url)
    yield url
    _drop_postgres_database(name)


@pytest.fixture(scope="module")
async def stack(
    db_url: str,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    workspace: Path = tmp_path_factory.mktemp("workspaces")
    settings = test_settings(db_url, temporal_address, workspace)
    async with running_stack(settings, git_server, busybox) as running:
        yield running
