"""Health endpoints for load balancers and orchestrators.

- `GET /healthz`: 200 `{"message": "ok"}` while the process runs (liveness).
- `GET /readyz`: 200 when the database answers, Temporal answers and the event listener is
  subscribed; else 503 `{"message", "checks": {"database", "temporal", "events"}}`, each check
  `ok` or `down`, naming what is down (readiness: take the process out of rotation). Why a
  check is down is logged (once per change), not answered: the probe is unauthenticated.

Checks are bounded (a few seconds each), run at most once at a time, and their result is
reused for a second, so a flood of probes costs one round of checks. Both paths are answered
before the host-name check: probes come with whatever `Host` the orchestrator uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import Engine, text
from starlette.types import Receive, Scope, Send
from temporalio.client import Client

from api.pubsub import DatabaseManager
from kiln.logconfig import redact_secrets

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
PATHS = frozenset({HEALTH_PATH, READY_PATH})
CHECK_TIMEOUT_SECONDS = 3.0
REUSE_SECONDS = 1.0
OK, DOWN = "ok", "down"


class Readiness:
    """The three checks behind /readyz."""

    def __init__(
        self,
        engine: Engine,
        manager: DatabaseManager,
        temporal: Callable[[], Client | None],
    ) -> None:
        self._engine = engine
        self._manager = manager
        # The API's Temporal client once connected; None when the app was handed a facade
        # (tests of the API), which has nothing to check.
        self._temporal = temporal
        self._running: asyncio.Task[dict[str, str]] | None = None
        self._ping: asyncio.Future[None] | None = None
        self._last: tuple[float, dict[str, str]] | None = None
        self._reported: dict[str, str] = {}

    async def checks(self) -> dict[str, str]:
        if self._last is not None and time.monotonic() - self._last[0] < REUSE_SECONDS:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._check_all())
        # Shielded: a probe that gives up does not cancel the round others wait for.
        return await asyncio.shield(self._running)

    async def _check_all(self) -> dict[str, str]:
        database, temporal = await asyncio.gather(
            self._bounded("database", self._database()),
            self._bounded("temporal", self._temporal_up()),
        )
        events = OK if self._manager.listening else DOWN
        if events == DOWN:
            self._report("events", "the event listener is not subscribed (reconnecting)")
        else:
            self._report("events", None)
        result = {"database": database, "temporal": temporal, "events": events}
        self._last = (time.monotonic(), result)
        return result

    async def _bounded(self, name: str, check: Awaitable[None]) -> str:
        try:
            await asyncio.wait_for(check, timeout=CHECK_TIMEOUT_SECONDS)
        except Exception as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            self._report(name, reason)
            return DOWN
        self._report(name, None)
        return OK

    async def _database(self) -> None:
        def ping() -> None:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        # One ping at a time: a database that hangs costs one thread, not one per probe.
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(asyncio.to_thread(ping))
            self._ping.add_done_callback(_consume)
        await asyncio.shield(self._ping)

    async def _temporal_up(self) -> None:
        client = self._temporal()
        if client is None:
            return
        serving = await client.service_client.check_health(
            timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
        )
        if not serving:
            raise RuntimeError("Temporal answers but its workflow service is not serving")

    def _report(self, name: str, reason: str | None) -> None:
        """Log a check's change of state (not every probe)."""
        state = DOWN if reason is not None else OK
        if self._reported.get(name, OK) == state:
            return
        self._reported[name] = state
        if reason is not None:
            log.warning("not ready: %s is down (%s)", name, redact_secrets(reason)[:500])
        else:
            log.info("ready again: %s is back", name)


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve the outcome of a ping nobody waited for any more (no 'never retrieved')."""
    if not future.cancelled():
        future.exception()


async def _answer(send: Send, status: int, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def health_endpoint(readiness: Readiness, scope: Scope, receive: Receive, send: Send) -> None:
    if scope.get("method") not in ("GET", "HEAD"):
        await _answer(send, 405, {"message": "Method Not Allowed"})
        return
    if scope["path"] == HEALTH_PATH:
        await _answer(send, 200, {"message": "ok"})
        return
    checks = await readiness.checks()
    down = [name for name, state in checks.items() if state != OK]
    if down:
        message = f"Not ready: {', '.join(down)} down"
        await _answer(send, 503, {"message": message, "checks": checks})
    else:
        await _answer(send, 200, {"message": "ready", "checks": checks})
