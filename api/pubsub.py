"""The Socket.io client manager whose message queue is Kiln's database (see `kiln.events`).

Every API process listens: on PostgreSQL with LISTEN on a dedicated connection, on SQLite by
polling the outbox. The listener reconnects with a capped back-off inside its generator (never a
busy loop) and, after a reconnect, sends the current record of every build that changed meanwhile,
since NOTIFYs sent while it was away are lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psycopg
from socketio.async_pubsub_manager import AsyncPubSubManager
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from kiln.db import SessionFactory
from kiln.events import CHANNEL, catch_up, publish_message
from kiln.models import SocketEvent, utcnow

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 10.0


class DatabaseManager(AsyncPubSubManager):  # type: ignore[misc]
    """A python-socketio client manager whose message queue is Kiln's database."""

    name = "kiln-database"

    def __init__(self, url: str, session_factory: SessionFactory) -> None:
        super().__init__(channel=CHANNEL)
        self._url = url
        self._sessions = session_factory
        # Set once the listener is subscribed: the API waits for it before serving.
        self.ready = asyncio.Event()
        self._lost_at: datetime | None = None
        self._last_outbox_id: int | None = None

    async def _publish(self, data: dict[str, Any]) -> None:
        def write() -> None:
            with self._sessions.begin() as session:
                publish_message(session, data)

        await asyncio.to_thread(write)

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
                log.warning("event listener lost its connection (%s); retry in %.1fs", exc, delay)
                self._lost_at = self._lost_at or utcnow()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen_postgres(self) -> AsyncIterator[dict[str, Any]]:
        dsn = make_url(self._url).set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
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
            payload = session.scalar(select(SocketEvent.payload).where(SocketEvent.id == row_id))
        return json.loads(payload) if payload is not None else None

    async def _listen_sqlite(self) -> AsyncIterator[dict[str, Any]]:
        # The outbox keeps events across a lost connection: go on from the last one seen.
        if self._last_outbox_id is None:
            self._last_outbox_id = await asyncio.to_thread(self._newest_outbox_id)
        self.ready.set()
        while True:
            rows = await asyncio.to_thread(self._outbox_after, self._last_outbox_id)
            for row_id, payload in rows:
                self._last_outbox_id = row_id
                yield json.loads(payload)
            if not rows:
                await asyncio.sleep(POLL_SECONDS)

    def _newest_outbox_id(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.max(SocketEvent.id))) or 0

    def _outbox_after(self, last_id: int) -> list[tuple[int, str]]:
        with self._sessions() as session:
            query = (
                select(SocketEvent.id, SocketEvent.payload)
                .where(SocketEvent.id > last_id)
                .order_by(SocketEvent.id)
                .limit(500)
            )
            return [(row_id, payload) for row_id, payload in session.execute(query)]
