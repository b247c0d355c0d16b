"""Engine and session factory for SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from kiln.workflow_ids import WORKFLOW_ID_PREFIX

SessionFactory = sessionmaker[Session]

# SQLite connections per process. More than the threads that may use one at once (the API's
# thread pool has 40; a request may hold two sessions): a thread waiting for a pooled connection
# while holding the write lock would stall every writer until the pool timeout.
SQLITE_POOL_SIZE = 100
# Set while the current task only reads (see `reads_only`).
_READS_ONLY: ContextVar[bool] = ContextVar("kiln_db_reads_only", default=False)


@contextmanager
def reads_only(enabled: bool = True) -> Iterator[None]:
    """Transactions begun inside (in this task, and threads started from it) only read, each
    from one snapshot of the database: on SQLite they take no write lock, so readers never
    queue behind each other or a writer (WAL gives each its snapshot); on PostgreSQL they are
    REPEATABLE READ, so two queries of one answer (a project's builds and their places in the
    queue) agree. Never wrap code that writes: a write after a read there fails at once when
    another process has written meanwhile. A write inside goes in `reads_only(False)`."""
    token = _READS_ONLY.set(enabled)
    try:
        yield
    finally:
        _READS_ONLY.reset(token)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            private_sqlite_file(Path(path))
        # The API and the worker are separate processes sharing one file: wait for locks.
        pool = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 0} if path != ":memory:" else {}
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # pre_ping: after a database restart, the next checkout reconnects instead of failing.
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    import psycopg  # only a PostgreSQL engine needs it (and SQLAlchemy has loaded it by now)

    repeatable_read = psycopg.IsolationLevel.REPEATABLE_READ

    def postgres_begin(connection: Connection) -> None:
        """A read-only transaction is REPEATABLE READ; the others keep the server's default
        (READ COMMITTED), so concurrent writers wait for each other instead of failing. Set on
        the driver's connection, which opens the transaction with it: no round trip of its
        own."""
        level = repeatable_read if _READS_ONLY.get() else None
        connection.connection.dbapi_connection.isolation_level = level  # type: ignore[union-attr]

    event.listen(engine, "begin", postgres_begin)
    return engine


def private_sqlite_file(path: Path) -> None:
    """Kiln's SQLite file (and its -wal and -shm, which SQLite creates with the database
    file's mode) readable by this user only: 0600, in a directory made 0700 when Kiln makes
    it. It holds password hashes, webhook secrets and every build's output."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # SQLite would make it 0644
    os.close(fd)
    for name in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        try:
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)
        except FileNotFoundError:
            continue


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Connection) -> None:
    """Take the write lock up front: a transaction that reads, then writes (claiming a build
    slot, appending to a log) can then never fail half-way on a snapshot another process made
    stale, and concurrent writers queue on the busy timeout instead."""
    connection.exec_driver_sql("BEGIN" if _READS_ONLY.get() else "BEGIN IMMEDIATE")


def make_session_factory(engine: Engine, *, workflow_id_prefix: str = "") -> SessionFactory:
    """Sessions of one deployment: build records read in them name their workflow with its
    KILN_WORKFLOW_ID_PREFIX (kiln.records.build_workflow_id)."""
    return sessionmaker(
        engine, expire_on_commit=False, info={WORKFLOW_ID_PREFIX: workflow_id_prefix}
    )
