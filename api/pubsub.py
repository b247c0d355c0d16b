"""The Socket.io client manager whose message queue is Kiln's database (see `kiln.events`).

Every API process listens: on PostgreSQL with LISTEN on a dedicated connection, on SQLite by
reading the outbox whenever a publisher's wake-up datagram arrives (`kiln.wakeups`), and every
POLL_SECONDS besides (a wake-up may be lost; a publisher sees a new listener within a second).
The listener reconnects with a capped back-off inside its generator (never a busy loop) and,
after a reconnect, sends the current record of every build that changed meanwhile, since
NOTIFYs sent while it was away are lost.

For operators: `listening` says whether the listener is subscribed right now (the API's
readiness), and each event emitted here reports how long it took from its commit
(`on_delivered`): the publisher's `sent_at` stamp, or the outbox row's creation time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from socketio.async_pubsub_manager import AsyncPubSubManager
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from kiln.db import SessionFactory, reads_only
from kiln.events import CHANNEL, catch_up, publish_message
from kiln.models import SocketEvent, utcnow
from kiln.wakeups import WakeupSocket

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 10.0
NAMESPACE = "/"
# When the change an event describes was committed (Unix time): set by publishers.
SENT_AT = "sent_at"


class DatabaseManager(AsyncPubSubManager):  # type: ignore[misc]
    """A python-socketio client manager whose message queue is Kiln's database."""

    name = "kiln-database"

    def __init__(
        self,
        url: str,
        session_factory: SessionFactory,
        on_delivered: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(channel=CHANNEL)
        self._url = url
        self._sessions = session_factory
        self._on_delivered = on_delivered
        # Set once the listener is subscribed: the API waits for it before serving.
        self.ready = asyncio.Event()
        # Whether it is subscribed now (false from a lost connection until it is back).
        self.connected = False
        self._lost_at: datetime | None = None
        self._last_outbox_id: int | None = None

    @property
    def listening(self) -> bool:
        """Subscribed now, and the task that delivers events is alive."""
        thread = getattr(self, "thread", None)
        alive = thread is not None and not (isinstance(thread, asyncio.Future) and thread.done())
        return self.ready.is_set() and self.connected and alive

    async def _publish(self, data: dict[str, Any]) -> None:
        data = {**data, SENT_AT: time.time()}

        def write() -> None:
            with self._sessions.begin() as session:
                publish_message(session, data)

        await asyncio.to_thread(write)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        await super()._handle_emit(message)
        sent_at = message.get(SENT_AT)
        if self._on_delivered is not None and isinstance(sent_at, int | float):
            self._on_delivered(max(0.0, time.time() - float(sent_at)))

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        sqlite = make_url(self._url).get_backend_name() == "sqlite"
        listen = self._listen_sqlite if sqlite else self._listen_postgres
        # Reconnect with a growing delay inside the generator: if _listen itself raised, the
        # base class would call it again at once and spin.
        delay = 0.5
        while True:
            try:
                async for message in listen():
                    delay = 0.5
                    yield message
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped connection, a restarting database
                self.connected = False
                log.warning("event listener lost its connection (%s); retry in %.1fs", exc, delay)
                self._lost_at = self._lost_at or utcnow()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen_postgres(self) -> AsyncIterator[dict[str, Any]]:
        # Imported here: a SQLite deployment's API never loads the driver (about 9 MB).
        import psycopg

        dsn = make_url(self._url).set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connected = True
            self.ready.set()
            if self._lost_at is not None:
                # NOTIFYs sent while we were away are gone: send the state they described.
                for missed in await asyncio.to_thread(catch_up, self._sessions, self._lost_at):
                    yield missed
                self._lost_at = None
            async for notify in conn.notifies():
                message: dict[str, Any] | None = json.loads(notify.payload)
                if message is not None and "outbox" in message:
                    message = await asyncio.to_thread(self._outbox_row, message["outbox"])
                if message is not None:
                    yield message

    def _outbox_row(self, row_id: int) -> dict[str, Any] | None:
        with self._sessions() as session:
            row = session.execute(
                select(SocketEvent.payload, SocketEvent.created_at).where(SocketEvent.id == row_id)
            ).one_or_none()
        return _stamped(row[0], row[1]) if row is not None else None

    async def _listen_sqlite(self) -> AsyncIterator[dict[str, Any]]:
        # The outbox keeps events across a lost connection: go on from the last one seen.
        if self._last_outbox_id is None:
            self._last_outbox_id = await asyncio.to_thread(self._newest_outbox_id)
        database = make_url(self._url).database
        wakeups = WakeupSocket(database) if database and database != ":memory:" else None
        try:
            self.connected = True
            self.ready.set()
            while True:
                if wakeups is not None:
                    wakeups.drain()  # this read answers every wake-up so far
                rows = await asyncio.to_thread(self._outbox_after, self._last_outbox_id)
                self.connected = True
                for row_id, payload, created_at in rows:
                    self._last_outbox_id = row_id
                    yield _stamped(payload, created_at)
                if not rows:
                    await _woken(wakeups, POLL_SECONDS)
        finally:
            if wakeups is not None:
                wakeups.close()

    # The outbox is read after every commit that publishes (and by every API process): on
    # SQLite these reads must not take the write lock the writers of builds wait for.
    def _newest_outbox_id(self) -> int:
        with reads_only(), self._sessions() as session:
            return session.scalar(select(func.max(SocketEvent.id))) or 0

    def _outbox_after(self, last_id: int) -> list[tuple[int, str, datetime]]:
        with reads_only(), self._sessions() as session:
            query = (
                select(SocketEvent.id, SocketEvent.payload, SocketEvent.created_at)
                .where(SocketEvent.id > last_id)
                .order_by(SocketEvent.id)
                .limit(500)
            )
            rows = session.execute(query).all()
            return [(row_id, payload, created) for row_id, payload, created in rows]


async def _woken(wakeups: WakeupSocket | None, timeout: float) -> None:
    """Until a wake-up datagram arrives, or `timeout` seconds."""
    if wakeups is None:
        await asyncio.sleep(timeout)
        return
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.sock_recv(wakeups.sock, 64), timeout)


def _stamped(payload: str, created_at: datetime | None) -> dict[str, Any]:
    """An outbox message, with its row's creation time as its commit time unless the publisher
    stamped it."""
    message: dict[str, Any] = json.loads(payload)
    if isinstance(message, dict) and created_at is not None:
        message.setdefault(SENT_AT, created_at.timestamp())
    return message
