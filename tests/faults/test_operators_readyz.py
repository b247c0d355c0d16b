"""`/readyz` of a real API process (`kiln api`) while what it needs goes away and comes back:
PostgreSQL stopped (the database and the event listener are down), then started; the Temporal
server stopped, then started. `/healthz` answers throughout. Stops PostgreSQL on the machine it
runs on (a test machine, as root)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from cli.temporal_server import wait_for_port
from testbed.stack import eventually
from tests.support.cluster import Cluster


def _pg_ctl(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
    )


@contextmanager
def postgres_stopped() -> Iterator[None]:
    _pg_ctl("stop")
    try:
        yield
    finally:
        _pg_ctl("start")
        wait_for_port("127.0.0.1", 5432, timeout=60)


async def readyz(cluster: Cluster) -> httpx.Response:
    return await cluster.stack.http.get("/readyz")


async def _answers(cluster: Cluster, status: int) -> dict[str, Any] | None:
    try:
        response = await readyz(cluster)
    except httpx.TransportError:
        return None
    if response.status_code != status:
        return None
    body: dict[str, Any] = response.json()
    return body


async def test_readyz_is_503_naming_the_database_and_events_while_postgres_is_stopped(
    cluster: Cluster,
) -> None:
    ready = await eventually(lambda: _answers(cluster, 200), timeout=30, interval=0.2)
    assert ready["checks"] == {"database": "ok", "temporal": "ok", "events": "ok"}

    with postgres_stopped():
        # The listener notices its connection closing: wait for it to say so too.
        down = await eventually(lambda: _events_down(cluster), timeout=30, interval=0.2)
        assert down["checks"]["database"] == "down"
        assert down["checks"]["temporal"] == "ok"
        assert "database" in down["message"] and "events" in down["message"]
        # Still alive: only not ready.
        assert (await cluster.stack.http.get("/healthz")).status_code == 200

    back = await eventually(lambda: _answers(cluster, 200), timeout=90, interval=0.5)
    assert back["checks"] == {"database": "ok", "temporal": "ok", "events": "ok"}


async def _events_down(cluster: Cluster) -> dict[str, Any] | None:
    body = await _answers(cluster, 503)
    return body if body is not None and body["checks"]["events"] == "down" else None


async def test_readyz_is_503_naming_temporal_while_it_is_stopped(cluster: Cluster) -> None:
    await eventually(lambda: _answers(cluster, 200), timeout=30, interval=0.2)

    cluster.server.stop()
    try:
        down = await eventually(lambda: _answers(cluster, 503), timeout=30, interval=0.2)
        assert down["checks"] == {"database": "ok", "temporal": "down", "events": "ok"}
        assert down["message"] == "Not ready: temporal down"
    finally:
        cluster.server.start()

    back = await eventually(lambda: _answers(cluster, 200), timeout=60, interval=0.5)
    assert back["checks"]["temporal"] == "ok"
