"""Push wake-ups for SQLite event listeners: a datagram on loopback after each commit that
publishes events, so listeners read the outbox at once instead of at their next poll.

Each listening process binds a UDP port on 127.0.0.1 and names it by a file in a directory
beside the database file (`<db>.listeners/<port>`); a publisher sends one empty datagram to each
port named there once its transaction commits. A wake-up carries nothing: it only says "read
the outbox now", so a lost, stale or forged one costs a read at most, and the listener's poll
stays as the fallback."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

LOOPBACK = "127.0.0.1"
# A publisher re-reads the directory at most this often (a new listener polls meanwhile).
LISTING_SECONDS = 1.0
_WAKE = "kiln_wake_listeners"


def listeners_dir(database: str) -> Path:
    return Path(f"{database}.listeners")


class WakeupSocket:
    """A listener's end: a bound, non-blocking UDP socket whose port is named in the directory."""

    def __init__(self, database: str) -> None:
        self._dir = listeners_dir(database)
        self._dir.mkdir(mode=0o700, exist_ok=True)
        _forget_stale(self._dir)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self._name = self._dir / str(self.sock.getsockname()[1])
        self._name.touch(mode=0o600)

    def drain(self) -> None:
        """Read every wake-up queued: one outbox read answers them all."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(64)

    def close(self) -> None:
        self._name.unlink(missing_ok=True)
        self.sock.close()


def _forget_stale(directory: Path) -> None:
    """Remove the names of ports nobody holds any more (listeners that were killed)."""
    for name in directory.iterdir():
        if not name.name.isdigit():
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, int(name.name)))
            except OSError:
                continue  # held: a live listener
        name.unlink(missing_ok=True)


class _Publisher:
    """The sending end, shared by a process: the listeners' ports, re-read now and then."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._ports: dict[str, tuple[float, list[int]]] = {}

    def wake(self, database: str) -> None:
        read_at, ports = self._ports.get(database, (0.0, []))
        if time.monotonic() - read_at > LISTING_SECONDS:
            ports = _ports(listeners_dir(database))
            self._ports[database] = (time.monotonic(), ports)
        for port in ports:
            with contextlib.suppress(OSError):  # a full buffer: that listener is awake anyway
                self._sock.sendto(b"", (LOOPBACK, port))


def _ports(directory: Path) -> list[int]:
    try:
        return [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
    except OSError:
        return []


_publisher = _Publisher()


def wake_after_commit(session: Session, database: str) -> None:
    """Wake `database`'s listeners once `session`'s transaction commits (not if it rolls back)."""
    session.info[_WAKE] = database


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    database = session.info.pop(_WAKE, None)
    if database is not None:
        _publisher.wake(database)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: object) -> None:
    session.info.pop(_WAKE, None)
