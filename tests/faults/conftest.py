"""A cluster per test: an API process and worker processes (started by the test) on a PostgreSQL
database and a Temporal server of the module's own, so that a module may restart them.

These run on PostgreSQL, the database of a multi-process deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import pytest
from temporalio.client import Client

from kiln.db import make_engine, make_session_factory
from kiln.migrate import upgrade
from testbed.databases import create_postgres_database, drop_postgres_database
from testbed.git_server import GitServer
from testbed.processes import api_process
from testbed.stack import Stack, free_port, stack_settings
from tests.support.cluster import Cluster
from tests.support.faults import RestartableTemporal


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    name, url = create_postgres_database()
    upgrade(url)
    yield url
    drop_postgres_database(name)


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableTemporal]:
    server = RestartableTemporal(tmp_path_factory.mktemp("temporal") / "history.db", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def cluster(
    pg_url: str,
    temporal: RestartableTemporal,
    git_server: GitServer,
    busybox: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    settings = stack_settings(pg_url, temporal.address, tmp_path / "unused").model_copy(
        update={"host_pickup_seconds": 3, "reconcile_seconds": 1, "reconcile_min_age_seconds": 2}
    )
    port = free_port()
    api = api_process(settings, port, tmp_path).start()
    engine = make_engine(pg_url)
    client = await Client.connect(temporal.address)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        stack = Stack(
            settings, make_session_factory(engine), str(http.base_url), http, git_server, busybox
        )
        running = Cluster(stack, settings, tmp_path, api, client, temporal, docker_client)
        try:
            yield running
        finally:
            for process in [*running.workers.values(), running.api]:
                process.stop()
            engine.dispose()
