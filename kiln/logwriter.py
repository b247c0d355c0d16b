"""Buffers a running build's output and stores it in chunks, each announced as a `buildLog`.

Output is masked as it arrives (kiln.masking): the project's secret values never reach the
database or an event, also when the build prints one across two writes (the last bytes that
could be the start of a value wait for the next write, or the final flush). Offsets and the
cap count stored, masked bytes; a mask never makes output longer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from sqlalchemy.exc import OperationalError

from kiln.db import SessionFactory
from kiln.events import LOG_EVENT, announce_output
from kiln.logs import append_log, reset_log
from kiln.masking import Masker

__all__ = ["LOG_EVENT", "LogWriter"]
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

    def __init__(
        self,
        sessions: SessionFactory,
        build_id: int,
        owner_id: int,
        cap: int,
        masked: Iterable[str] = (),
    ) -> None:
        self._sessions = sessions
        self._build_id = build_id
        self._owner_id = owner_id
        self._cap = cap
        self._masker = Masker(masked)
        self._lock = threading.Lock()
        self._raw = b""  # written, not yet masked: it may end with the start of a secret
        self._pending = b""  # masked, not yet stored
        self._accepted = 0  # masked bytes taken (stored or pending), at most the cap
        self._truncated = False
        self._received = 0  # bytes given to write, stored or not
        self._stored = 0  # bytes in the database: each flush appends there, no size query
        with sessions.begin() as session:
            reset_log(session, build_id)

    def write(self, data: bytes) -> None:
        with self._lock:
            self._received += len(data)
            if self._accepted >= self._cap:
                self._truncated = self._truncated or bool(data)
                return
            self._take(self._raw + data, final=False)

    def _take(self, raw: bytes, *, final: bool) -> None:
        """Mask what may be masked of `raw`, keep the rest back; the cap cuts masked output
        (so a secret is never cut in two by it). Called with the lock held."""
        ready, self._raw = self._masker.split(raw, final=final)
        room = self._cap - self._accepted
        if len(ready) > room or (len(ready) == room and self._raw):
            ready = ready[:room]
            self._raw = b""
            self._truncated = True
        self._pending += ready
        self._accepted += len(ready)

    @property
    def full(self) -> bool:
        with self._lock:
            return self._accepted >= self._cap

    def resume(self, output: Iterable[bytes]) -> None:
        """Given the whole output again, from its start, add what `write` has not yet seen."""
        with self._lock:
            skip = self._received
        for chunk in output:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            self.write(chunk[skip:])
            skip = 0
            if self.full:
                # Output past the cap means the log was cut: the next non-empty chunk tells.
                for more in output:
                    if more:
                        self.write(more)  # stores nothing, marks the log truncated
                        break
                return

    def flush(self, *, final: bool = False) -> None:
        """Store what has arrived. While the database is unreachable the output stays buffered
        (the build goes on); only the final flush must succeed."""
        with self._lock:
            if final and self._raw:
                self._take(self._raw, final=True)
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
            end = append_log(session, self._build_id, data, offset=self._stored)
            announce_output(session, self._build_id, self._owner_id, end - len(data), data)
        self._stored = end
