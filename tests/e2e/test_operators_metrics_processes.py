"""`GET /metrics` of a `kiln api` serving from two processes on one port (`KILN_API_WORKERS=2`):
whichever process answers a scrape, it shows the figures of both (kiln.metrics), and a process
that dies takes its sockets out of the count."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import socketio

from testbed.git_server import GitServer
from testbed.processes import KilnProcess, api_process
from testbed.stack import eventually, free_port, stack_settings
from tests.e2e.test_operators_metrics import Samples, scrape, value
from tests.support.helpers import new_repo

ROUTE = "/api/build/{buildId}"
SCRAPES = 8
PASSWORD = "correct horse battery"
# Enough sockets that both processes hold some (each connection goes to either).
SOCKETS = 12


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An operator's own PROMETHEUS_MULTIPROC_DIR, so the test can see who wrote there."""
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def two_processes(
    db_url: str, temporal_address: str, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KilnProcess]:
    """`kiln api` with two processes, alone on a database of its own."""
    root = tmp_path_factory.mktemp("api")
    settings = stack_settings(db_url, temporal_address, root / "workspaces")
    api = api_process(settings.model_copy(update={"api_workers": 2}), free_port(), root)
    api.env["PROMETHEUS_MULTIPROC_DIR"] = str(shared_dir)
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
async def http(two_processes: KilnProcess) -> AsyncIterator[httpx.AsyncClient]:
    # A new connection for every request: the kernel hands each to either process.
    limits = httpx.Limits(max_keepalive_connections=0)
    base_url = f"http://127.0.0.1:{two_processes.env['KILN_PORT']}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        await eventually(lambda: _ready(client), timeout=60)
        yield client


async def _ready(http: httpx.AsyncClient) -> bool | None:
    try:
        return True if (await http.get("/readyz")).status_code == 200 else None
    except httpx.TransportError:
        return None


async def register(http: httpx.AsyncClient) -> dict[str, str]:
    """A new user's Authorization header."""
    body = {"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD, "name": "Ops"}
    answer = await http.post("/api/auth/register", json=body)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def api_children(api: KilnProcess) -> list[int]:
    """The pids of the uvicorn processes serving the port (children of `kiln api`)."""
    assert api.process is not None
    found: list[int] = []
    for task in Path(f"/proc/{api.process.pid}/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return [pid for pid in found if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]


def writers(shared_dir: Path, prefix: str) -> set[int]:
    """The pids whose files of kind `prefix` (counter, histogram) are in the shared directory."""
    return {
        int(name.stem.rpartition("_")[2])
        for name in shared_dir.glob(f"{prefix}_*.db")
        if name.stem.rpartition("_")[2].isdigit()
    }


async def test_every_scrape_counts_the_requests_both_processes_answered(
    http: httpx.AsyncClient,
    two_processes: KilnProcess,
    shared_dir: Path,
    git_server: GitServer,
    busybox: str,
) -> None:
    headers = await register(http)
    repo = new_repo(git_server, "metrics")
    project = {"name": "app", "repoUrl": repo.url, "image": busybox, "buildCommand": "true"}
    created = await http.post("/api/project/projects", json=project, headers=headers)
    assert created.status_code == 201, created.text
    build_id = created.json()["build"]["id"]
    before = await scrape(http)

    async def read(gate: asyncio.Semaphore) -> None:
        async with gate:
            answer = await http.get(f"/api/build/{build_id}", headers=headers)
            assert answer.status_code == 200, answer.text

    gate = asyncio.Semaphore(16)
    await asyncio.gather(*(read(gate) for _ in range(200)))

    # Both processes answered some of them (each keeps its own file)...
    assert writers(shared_dir, "counter") >= set(api_children(two_processes))
    # ...and every scrape, whichever process answers it, counts all 200.
    for _ in range(SCRAPES):
        after = await scrape(http)
        moved = _moved(after, before, method="GET", route=ROUTE, status="200")
        assert moved == 200
    # The figures of whichever process answered alone would mislead: they are left out.
    assert not any(name.startswith("process_") for name, _labels in after)


async def test_sockets_are_counted_over_both_processes_and_a_dead_ones_are_dropped(
    http: httpx.AsyncClient, two_processes: KilnProcess
) -> None:
    headers = await register(http)
    base = value(await scrape(http), "kiln_socket_connections")
    clients = [await _connect(str(http.base_url), headers) for _ in range(SOCKETS)]
    try:
        for _ in range(SCRAPES):
            assert value(await scrape(http), "kiln_socket_connections") == base + SOCKETS

        # A process killed outright: uvicorn starts another, and its sockets are gone.
        victim = api_children(two_processes)[0]
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: _dropped(clients), timeout=30)
        alive = sum(1 for client in clients if client.connected)
        assert 0 <= alive < SOCKETS
        await eventually(lambda: _counted(http, base + alive), timeout=30)
        for _ in range(SCRAPES):
            assert value(await scrape(http), "kiln_socket_connections") == base + alive
    finally:
        for client in clients:
            await client.disconnect()
    await eventually(lambda: _counted(http, base), timeout=30)


async def _connect(base_url: str, headers: dict[str, str]) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    token = headers["Authorization"].removeprefix("Bearer ")
    await client.connect(
        base_url.rstrip("/"), auth={"token": token}, transports=["websocket"], wait_timeout=10
    )
    return client


async def _dropped(clients: list[socketio.AsyncClient]) -> bool | None:
    return True if not all(client.connected for client in clients) else None


async def _counted(http: httpx.AsyncClient, expected: float) -> bool | None:
    return True if value(await scrape(http), "kiln_socket_connections") == expected else None


def _moved(after: Samples, before: Samples, **labels: str) -> float:
    name = "kiln_http_requests_total"
    return value(after, name, **labels) - value(before, name, **labels)
