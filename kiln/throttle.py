"""Failed logins, throttled per account and per client address, in the database so that every
API process counts the same attempts.

An attempt is written down as a failure *before* its password is checked and struck off when
the password was right, so attempts in flight count too: a burst of concurrent guesses gets no
more tries than a sequence. After `max_failures` within `window_seconds` for the account or for
the address, every attempt — even with the right password — is refused until the oldest
counted failure leaves the window. Keys are hashed: no email or address is stored.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, Integer, String, delete, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from kiln.db import SessionFactory
from kiln.models import Base, UTCDateTime, utcnow
from kiln.quotas import LimitReached
from kiln.settings import Settings


class LoginFailure(Base):
    """One failed (or not yet checked) login attempt, under one key (account or address)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


@dataclass(frozen=True)
class Attempt:
    """A login attempt let through: its failure records, until `succeeded` strikes them off."""

    failure_ids: list[int]


class LoginThrottle:
    def __init__(self, sessions: SessionFactory, max_failures: int, window_seconds: int) -> None:
        self._sessions = sessions
        self._max = max_failures
        self._window = timedelta(seconds=window_seconds)

    @classmethod
    def from_settings(cls, sessions: SessionFactory, settings: Settings) -> LoginThrottle:
        return cls(sessions, settings.login_max_failures, settings.login_window_seconds)

    def begin(self, email: str, address: str | None) -> Attempt:
        """Let an attempt through, counted as a failure for now; LimitReached (with how long
        to wait) while the account or the address has too many recent failures."""
        keys = [_key("account", email.strip().lower())]
        if address:
            keys.append(_key("address", address))
        now = utcnow()
        with self._sessions.begin() as session:
            _lock(session, keys)
            # Keep the table to the window: older failures never count again.
            expired = LoginFailure.failed_at <= now - self._window
            session.execute(delete(LoginFailure).where(expired))
            wait = max(self._wait(session, key, now) for key in keys)
            if wait > 0:
                raise LimitReached(
                    f"Too many failed logins: try again in {wait} seconds", retry_after=wait
                )
            failures = [LoginFailure(key=key, failed_at=now) for key in keys]
            session.add_all(failures)
            session.flush()
            return Attempt([failure.id for failure in failures])

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt was no failure."""
        with self._sessions.begin() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.id.in_(attempt.failure_ids)))

    def _wait(self, session: Session, key: str, now: datetime) -> int:
        """Seconds until `key` has fewer than the maximum failures in the window (0: now)."""
        times = list(
            session.scalars(
                select(LoginFailure.failed_at)
                .where(LoginFailure.key == key, LoginFailure.failed_at > now - self._window)
                .order_by(LoginFailure.failed_at)
            )
        )
        if len(times) < self._max:
            return 0
        frees_at = times[len(times) - self._max] + self._window
        return max(1, math.ceil((frees_at - now).total_seconds()))


def _lock(session: Session, keys: list[str]) -> None:
    """Count and write each key's attempts one transaction at a time: PostgreSQL advisory locks
    until the transaction ends, taken in one order (SQLite's transactions are serial already)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(keys):
        number = int.from_bytes(bytes.fromhex(key)[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:number)"), {"number": number})
