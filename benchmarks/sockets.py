"""Socket.io clients that stamp every event on arrival, and the publish time of every event
(its `sent_at`, stamped by the publisher in the transaction that commits it)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psycopg
import socketio
from sqlalchemy import select
from sqlalchemy.engine import make_url

from kiln.db import SessionFactory
from kiln.events import CHANNEL, LOG_EVENT, STATUS_EVENT
from kiln.models import SocketEvent

EventKey = tuple[str, int, str]  # (event, build id, status or log offset)


def event_key(event: str, data: Any) -> EventKey | None:
    if event == STATUS_EVENT:
        return (event, int(data["id"]), str(data["status"]))
    if event == LOG_EVENT:
        return (event, int(data["buildId"]), str(data["offset"]))
    return None


class Listener:
    """One real Socket.io client (websocket transport, as the dashboard and the CLI use)."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.arrivals: dict[EventKey, float] = {}  # wall clock at arrival (time.time())
        self.monotonic: dict[EventKey, float] = {}  # perf_counter at arrival
        self._waiters: dict[EventKey, asyncio.Event] = defaultdict(asyncio.Event)
        self.client.on("*", self._record)

    async def _record(self, event: str, data: Any) -> None:
        key = event_key(event, data)
        if key is not None and key not in self.arrivals:
            self.monotonic[key] = time.perf_counter()
            self.arrivals[key] = time.time()
            self._waiters[key].set()

    async def connect(self, base_url: str, token: str) -> None:
        await self.client.connect(
            base_url, auth={"token": token}, transports=["websocket"], wait_timeout=30
        )

    async def status(self, build_id: int, status: str, timeout: float = 120) -> float:
        """perf_counter when the build's `status` event arrived (waits for it)."""
        key = (STATUS_EVENT, build_id, status)
        await asyncio.wait_for(self._waiters[key].wait(), timeout)
        return self.monotonic[key]

    def statuses_of(self, build_id: int) -> set[str]:
        return {k[2] for k in self.arrivals if k[0] == STATUS_EVENT and k[1] == build_id}


class PublishTimes:
    """Reads every event Kiln publishes straight from the database, in a thread: on PostgreSQL
    by LISTEN, on SQLite from the outbox. Keeps each event's `sent_at`."""

    def __init__(self, url: str, sessions: SessionFactory) -> None:
        self._url, self._sessions = url, sessions
        self.sent_at: dict[EventKey, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PublishTimes:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("could not listen to Kiln's events")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _keep(self, payload: str) -> None:
        message = json.loads(payload)
        if "outbox" in message:
            message = json.loads(self._outbox_rows(message["outbox"] - 1, 1)[0][1])
        key = event_key(message.get("event", ""), (message.get("data") or [None])[0])
        if key is not None and "sent_at" in message:
            self.sent_at.setdefault(key, float(message["sent_at"]))

    def _outbox_rows(self, after: int, limit: int) -> list[tuple[int, str]]:
        with self._sessions() as session:
            query = select(SocketEvent.id, SocketEvent.payload).where(SocketEvent.id > after)
            rows = session.execute(query.order_by(SocketEvent.id).limit(limit)).all()
            return [(row_id, payload) for row_id, payload in rows]

    def _run(self) -> None:
        if make_url(self._url).get_backend_name() == "sqlite":
            self._poll_outbox()
        else:
            self._listen()

    def _poll_outbox(self) -> None:
        newest = self._outbox_rows(-1, 10**9)
        last = newest[-1][0] if newest else 0
        self._ready.set()
        while not self._stop.is_set():
            rows = self._outbox_rows(last, 1000)
            for row_id, payload in rows:
                last = row_id
                self._keep(payload)
            if not rows:
                time.sleep(0.02)

    def _listen(self) -> None:
        dsn = make_url(self._url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._ready.set()
            while not self._stop.is_set():
                for notify in conn.notifies(timeout=0.5):
                    self._keep(notify.payload)


def latencies(
    publish: PublishTimes, listeners: list[Listener], keep: Callable[[EventKey], bool]
) -> list[float]:
    """Seconds from each kept event's publication to its arrival, at every listener."""
    return [
        arrived - publish.sent_at[key]
        for listener in listeners
        for key, arrived in listener.arrivals.items()
        if keep(key) and key in publish.sent_at
    ]
