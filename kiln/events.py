"""Socket.io pub/sub through the database, so the worker and every API process share events.

Publishing happens inside the caller's transaction: an event goes out exactly when the status
change it describes commits. On PostgreSQL the channel is LISTEN/NOTIFY (payloads over the
~8 kB NOTIFY cap go through the `socket_events` outbox and only their id is notified); on
SQLite every event goes through the outbox, which listeners read when a publisher wakes them
after its commit (`kiln.wakeups`), and poll besides. The listening side (the
Socket.io client manager) is `api.pubsub`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from kiln.db import SessionFactory
from kiln.models import Build, BuildStatus, Project, SocketEvent, utcnow
from kiln.records import build_record, queue_positions, user_room
from kiln.wakeups import wake_after_commit

CHANNEL = "kiln_socketio"
# NOTIFY refuses payloads of 8000 bytes or more; stay well under.
NOTIFY_LIMIT = 7000
# Publishers are not Socket.io servers: this id differs from every manager's, so all deliver.
PUBLISHER_HOST_ID = "kiln-database-publisher"
OUTBOX_KEEP = timedelta(minutes=10)


STATUS_EVENT = "buildStatusUpdate"
LOG_EVENT = "buildLog"


def announce(session: Session, build: Build) -> None:
    """Publish the build's record to its owner's sockets when `session` commits."""
    owner_id = session.scalar(select(Project.owner_id).where(Project.id == build.project_id))
    if owner_id is not None:
        record = build_record(build, queue_positions(session, [build.project_id]))
        publish(session, STATUS_EVENT, record, user_room(owner_id))


def announce_output(
    session: Session, build_id: int, owner_id: int, offset: int, data: bytes
) -> None:
    """Publish a piece of a build's output (stored at `offset`) when `session` commits."""
    event = {"buildId": build_id, "offset": offset, "chunk": data.decode(errors="replace")}
    publish(session, LOG_EVENT, event, user_room(owner_id))


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
    """Queue a Socket.io event in `session`'s transaction; it is delivered when that commits.
    `sent_at` (about the commit) lets listeners measure delivery; python-socketio ignores it."""
    publish_message(session, emit_message(event, data, room) | {"sent_at": time.time()})


def publish_message(session: Session, message: dict[str, Any]) -> None:
    payload = json.dumps(message, separators=(",", ":"))
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and len(payload.encode()) < NOTIFY_LIMIT:
        session.execute(select(func.pg_notify(CHANNEL, payload)))
        return
    row = SocketEvent(payload=payload)
    session.add(row)
    if not postgres:
        database = session.get_bind().engine.url.database
        if database and database != ":memory:":
            wake_after_commit(session, database)
    if postgres:
        session.flush()
        session.execute(select(func.pg_notify(CHANNEL, json.dumps({"outbox": row.id}))))


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
