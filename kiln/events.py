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
from datetime import datetime, timedelta
from typing import Any

import psycopg
from socketio.async_pubsub_manager import AsyncPubSubManager
from sqlalchemy import delete, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from kiln.db import SessionFactory
from kiln.models import Build, BuildStatus, Project, SocketEvent, utcnow
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


def catch_up(sessions: SessionFactory, since: datetime) -> list[dict[str, Any]]:
    """Status events for builds that may have changed since `since`: every unfinished build and
    every build finished since then (with a margin for clock skew between hosts)."""
    margin = since - timedelta(seconds=5)
    with sessions() as session:
        query = (
            select(Build, Project.owner_id)
            .join(Project, Build.project_id == Project.id)
            .where(
                or_(
                    Build.status.in_([BuildStatus.QUEUED, BuildStatus.RUNNING]),
                    Build.finished_at >= margin,
                )
            )
            .order_by(Build.id)
        )
        rows = session.execute(query).all()
        positions = queue_positions(session, {build.project_id for build, _ in rows})
        return [
            emit_message(STATUS_EVENT, build_record(build, positions), user_room(owner_id))
            for build, owner_id in rows
        ]


def prune_outbox(sessions: SessionFactory) -> None:
    """Forget outbox rows every listener has long since read (the worker calls this)."""
    with sessions.begin() as session:
        cutoff = utcnow() - OUTBOX_KEEP
        newest = select(func.max(SocketEvent.id)).scalar_subquery()
        # The newest row always stays: SQLite would otherwise hand out its id again to the next
        # event, and listeners, which go on from the last id they saw, would skip events.
        session.execute(
            delete(SocketEvent).where(SocketEvent.created_at < cutoff, SocketEvent.id < newest)
        )
