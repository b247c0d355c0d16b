"""SQLite under concurrency: readers that never queue on the write lock, and listeners woken by
a publisher's commit instead of waiting for their next poll."""

from __future__ import annotations

import select
import time

from sqlalchemy import select as sql_select

from kiln.db import SessionFactory, reads_only
from kiln.events import publish
from kiln.models import Build
from kiln.wakeups import WakeupSocket, listeners_dir


def _database(sessions: SessionFactory) -> str:
    database = sessions.kw["bind"].url.database
    assert isinstance(database, str)
    return database


def _woken(wakeups: WakeupSocket, timeout: float) -> bool:
    readable, _, _ = select.select([wakeups.sock], [], [], timeout)
    return bool(readable)


def test_a_read_goes_on_while_another_transaction_holds_the_write_lock(
    sessions: SessionFactory,
) -> None:
    with sessions.begin() as writer:
        writer.execute(sql_select(Build.id))  # BEGIN IMMEDIATE: the write lock is held
        start = time.monotonic()
        with reads_only(), sessions() as reader:
            assert reader.execute(sql_select(Build.id)).all() == []
        assert time.monotonic() - start < 1  # not the 30 s busy timeout


def test_a_commit_that_publishes_an_event_wakes_the_listeners(sessions: SessionFactory) -> None:
    wakeups = WakeupSocket(_database(sessions))
    try:
        with sessions.begin() as session:
            publish(session, "buildLog", {"buildId": 1, "offset": 0, "chunk": "hi"}, "user:1")
            assert not _woken(wakeups, 0.05)  # not before the commit
        assert _woken(wakeups, 5)
        wakeups.drain()

        rolled_back = sessions()
        with rolled_back:
            rolled_back.begin()
            publish(rolled_back, "buildLog", {"buildId": 1, "offset": 2, "chunk": "x"}, "user:1")
            rolled_back.rollback()
        assert not _woken(wakeups, 0.2)
    finally:
        wakeups.close()


def test_a_killed_listeners_port_is_forgotten_by_the_next_listener(
    sessions: SessionFactory,
) -> None:
    database = _database(sessions)
    gone = WakeupSocket(database)
    port = gone.sock.getsockname()[1]
    gone.sock.close()  # as if killed: its name stays behind
    assert (listeners_dir(database) / str(port)).exists()
    listeners = WakeupSocket(database)
    try:
        assert not (listeners_dir(database) / str(port)).exists()
    finally:
        listeners.close()
