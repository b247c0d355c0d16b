"""Health probes on a running stack: `/healthz` answers while the process runs, `/readyz` says
whether the database, Temporal and the event listener all work — and names the one that does
not when the event listener is cut off from the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from testbed.databases import POSTGRES_ADMIN_URL
from testbed.stack import Stack, eventually

FOREIGN_HOST = {"Host": "10.1.2.3:8000"}  # what a load balancer's probe may send


async def test_healthz_answers_ok_while_the_process_runs_whatever_the_host(stack: Stack) -> None:
    for headers in ({}, FOREIGN_HOST):
        response = await stack.http.get("/healthz", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"message": "ok"}
        assert response.headers["cache-control"] == "no-store"


async def test_readyz_is_200_when_the_database_temporal_and_events_all_work(stack: Stack) -> None:
    for headers in ({}, FOREIGN_HOST):
        response = await stack.http.get("/readyz", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "message": "ready",
            "checks": {"database": "ok", "temporal": "ok", "events": "ok"},
        }


async def test_only_the_probes_skip_the_host_check(stack: Stack) -> None:
    for path in ("/metrics", "/api/project/projects"):
        refused = await stack.http.get(path, headers=FOREIGN_HOST)
        assert refused.status_code == 400, path
        assert set(refused.json()) == {"message"}


async def test_probes_answer_other_methods_with_405_and_a_message(stack: Stack) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        response = await stack.http.post(path)
        assert response.status_code == 405, path
        assert set(response.json()) == {"message"}


@contextmanager
def events_cut_off(stack: Stack) -> Iterator[None]:
    """The event listener loses its source, the rest of the database stays: on SQLite the
    outbox table it polls is renamed away; on PostgreSQL its LISTEN connection is ended and the
    database takes no new connections (the API's pooled ones go on answering)."""
    url = make_url(stack.settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE socket_events RENAME TO socket_events_away"))
        try:
            yield
        finally:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE socket_events_away RENAME TO socket_events"))
            engine.dispose()
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = url.database
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        ended = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND query ILIKE 'LISTEN%'"
            ),
            {"name": name},
        ).all()
        assert ended, "the API's listener was not found"
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


async def test_readyz_is_503_naming_the_event_listener_while_it_is_cut_off_then_200(
    stack: Stack,
) -> None:
    async def not_ready() -> dict[str, Any] | None:
        response = await stack.http.get("/readyz")
        if response.status_code != 503:
            return None
        body: dict[str, Any] = response.json()
        return body

    async def ready() -> bool | None:
        return True if (await stack.http.get("/readyz")).status_code == 200 else None

    with events_cut_off(stack):
        body = await eventually(not_ready, timeout=30, interval=0.2)
    assert set(body) == {"message", "checks"}
    assert body["checks"]["events"] == "down"
    assert body["checks"]["temporal"] == "ok"
    assert "events" in body["message"]
    await eventually(ready, timeout=60, interval=0.2)
