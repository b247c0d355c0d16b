"""Buffers a running build's output and stores it in chunks, each announced as a `buildLog`."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import OperationalError

from kiln.db import SessionFactory
from kiln.events import publish
from kiln.logs import append_log, reset_log
from kiln.records import user_room

LOG_EVENT = "buildLog"
TAIL_KEPT = 64 * 1024
log = logging.getLogger(__name__)


def _complete_utf8(data: bytes) -> int:
    """Length of the longest prefix of `data` that does not end inside a UTF-8 character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): is its character whole?
            need = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


class LogWriter:
    """Thread-safe: the streaming thread calls `write`, the heartbeat loop calls `flush`."""

    def __init__(self, sessions: SessionFactory, build_id: int, owner_id: int, cap: int) -> None:
        self._sessions = sessions
        self._build_id = build_id
        self._room = user_room(owner_id)
        self._cap = cap
        self._lock = threading.Lock()
        self._pending = b""
        self._accepted = 0
        self._truncated = False
        self._tail = b""  # the last bytes received, stored or not
        with sessions.begin() as session:
            reset_log(session, build_id)

    def write(self, data: bytes) -> None:
        with self._lock:
            self._tail = (self._tail + data)[-TAIL_KEPT:]
            room = self._cap - self._accepted
            if room <= 0:
                self._truncated = self._truncated or bool(data)
                return
            if len(data) > room:
                data = data[:room]
                self._truncated = True
            self._pending += data
            self._accepted += len(data)

    def complete(self, last_line: bytes) -> None:
        """Add what the output stream missed of the container's last line. (Docker's follow
        stream can drop a final line without a newline when the container exits; moby#43860.)"""
        with self._lock:
            tail = self._tail
        for kept in range(min(len(last_line), len(tail)), -1, -1):
            if tail.endswith(last_line[:kept]):
                self.write(last_line[kept:])
                return

    def flush(self, *, final: bool = False) -> None:
        """Store what has arrived. While the database is unreachable the output stays buffered
        (the build goes on); only the final flush must succeed."""
        with self._lock:
            cut = len(self._pending) if final else _complete_utf8(self._pending)
            data, self._pending = self._pending[:cut], self._pending[cut:]
            if final and self._truncated:
                data += f"\n[kiln] log truncated at {self._cap} bytes\n".encode()
                self._truncated = False
        if not data:
            return
        try:
            self._store(data)
        except OperationalError:
            with self._lock:
                self._pending = data + self._pending
            if final:
                raise
            log.warning("build %s: output kept in memory, database unreachable", self._build_id)

    def _store(self, data: bytes) -> None:
        with self._sessions.begin() as session:
            end = append_log(session, self._build_id, data)
            event = {
                "buildId": self._build_id,
                "offset": end - len(data),
                "chunk": data.decode(errors="replace"),
            }
            publish(session, LOG_EVENT, event, self._room)
