"""Socket.io pub/sub through the database, so the worker and every API process share events.

Publishing happens inside the caller's transaction: an event goes out exactly when the status
change it describes commits. On PostgreSQL the channel is LISTEN/NOTIFY (payloads over the
~8 kB NOTIFY cap go through the `socket_events` outbox and only their id is notified); on
SQLite every event goes through the outbox, which listeners poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
from socketio.async_pubsub_manager import AsyncPubSubManager
from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from kiln.db import SessionFactory
from kiln.models import Build, Project, SocketEvent, utcnow
from kiln.records import build_record, queue_positions, user_room

log = logging.getLogger(__name__)

CHANNEL = "kiln_socketio"
# NOTIFY refuses payloads of 8000 bytes or more; stay well under.
NOTIFY_LIMIT = 7000
# Publishers are not Socket.io servers: this id differs from every manager's, so all deliver.
PUBLISHER_HOST_ID = "kiln-database-publisher"
POLL_SECONDS = 0.05
OUTBOX_KEEP = timedelta(minutes=10)
RECONNECT_MAX_SECONDS = 10.0


STATUS_EVENT = "buildStatusUpdate"


def announce(session: Session, build: Build) -> None:
    """Publish the build's record to its owner's sockets when `session` commits."""
    owner_id = session.scalar(select(Project.owner_id).where(Project.id == build.project_id))
    if owner_id is not None:
        record = build_record(build, queue_positions(session, [build.project_id]))
        publish(session, STATUS_EVENT, record, user_room(owner_id))


def emit_message(event: str, data: Any, room: str) -> dict[str, Any]:
    """A message in the format python-socketio's pub/sub managers exchange."""
    return {
        "method": "emit",
        "event": event,
        "data": [data],
        "binary": False,
        "namespace": "/",
        "room": room,
        "skip_sid": None,
        "callback": None,
        "host_id": PUBLISHER_HOST_ID,
    }


def publish(session: Session, event: str, data: Any, room: str) -> None:
    """Queue a Socket.io event in `session`'s transaction; it is delivered when that commits."""
    publish_message(session, emit_message(event, data, room))


def publish_message(session: Session, message: dict[str, Any]) -> None:
    payload = json.dumps(message, separators=(",", ":"))
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and len(payload.encode()) < NOTIFY_LIMIT:
        session.execute(select(func.pg_notify(CHANNEL, payload)))
        return
    row = SocketEvent(payload=payload)
    session.add(row)
    if postgres:
        session.flush()
        session.execute(select(func.pg_notify(CHANNEL, json.dumps({"outbox": row.id}))))


class DatabaseManager(AsyncPubSubManager):  # type: ignore[misc]
    """A python-socketio client manager whose message queue is Kiln's database."""

    name = "kiln-database"

    def __init__(self, url: str, session_factory: SessionFactory) -> None:
        super().__init__(channel=CHANNEL)
        self._url = url
        self._sessions = session_factory
        # Set once the listener is subscribed: the API waits for it before serving.
        self.ready = asyncio.Event()

    async def _publish(self, data: dict[str, Any]) -> None:
        def write() -> None:
            with self._sessions.begin() as session:
                publish_message(session, data)

        await asyncio.to_thread(write)

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        listen = (
            self._listen_sqlite
            if make_url(self._url).get_backend_name() == "sqlite"
            else (self._listen_postgres)
        )
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
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen_postgres(self) -> AsyncIterator[dict[str, Any]]:
        dsn = make_url(self._url).set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.ready.set()
            async for notify in conn.notifies():
                message = json.loads(notify.payload)
                if "outbox" in message:
                    message = await asyncio.to_thread(self._outbox_row, message["outbox"])
                if message is not None:
                    yield message

    def _outbox_row(self, row_id: int) -> dict[str, Any] | None:
        with self._sessions() as session:
            payload = session.scalar(select(SocketEvent.payload).where(SocketEvent.id == row_id))
        return json.loads(payload) if payload is not None else None

    async def _listen_sqlite(self) -> AsyncIterator[dict[str, Any]]:
        last_id = await asyncio.to_thread(self._newest_outbox_id)
        self.ready.set()
        polls = 0
        while True:
            rows = await asyncio.to_thread(self._outbox_after, last_id)
            for row_id, payload in rows:
                last_id = row_id
                yield json.loads(payload)
            polls += 1
            if polls % 1200 == 0:  # about once a minute
                await asyncio.to_thread(self._prune_outbox)
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

    def _prune_outbox(self) -> None:
        with self._sessions.begin() as session:
            cutoff = utcnow() - OUTBOX_KEEP
            session.execute(delete(SocketEvent).where(SocketEvent.created_at < cutoff))
