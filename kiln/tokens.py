"""API tokens: named, revocable secrets for the CLI and scripts. A secret is shown once, at
creation, and stored only as its SHA-256 (it is 256 random bits: no slow hash is needed to
make guessing hopeless, and a lookup by hash stays one indexed query)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from kiln.db import SessionFactory, reads_only
from kiln.errors import NotFound
from kiln.models import ApiToken, utcnow
from kiln.records import iso

PREFIX = "kiln_"
# lastUsedAt is refreshed at most this often per token: a busy script writes once a minute.
TOUCH_EVERY = timedelta(minutes=1)


def looks_like_api_token(token: str) -> bool:
    return token.startswith(PREFIX)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_record(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "createdAt": iso(token.created_at),
        "lastUsedAt": iso(token.last_used_at),
    }


@dataclass(frozen=True)
class FoundToken:
    token_id: int
    user_id: int


class TokenService:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def create(self, user_id: int, name: str) -> tuple[dict[str, Any], str]:
        """The new token's record and its secret (never stored, never shown again)."""
        secret = PREFIX + secrets.token_urlsafe(32)
        with self._sessions.begin() as session:
            token = ApiToken(user_id=user_id, name=name, secret_hash=_digest(secret))
            session.add(token)
            session.flush()
            return token_record(token), secret

    def list_owned(self, user_id: int) -> list[dict[str, Any]]:
        with self._sessions() as session:
            tokens = session.scalars(
                select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
            )
            return [token_record(token) for token in tokens]

    def delete(self, user_id: int, token_id: int) -> None:
        """Revoke: from now on the secret is refused. Another user's token is NotFound (its
        existence is not theirs to learn)."""
        with self._sessions.begin() as session:
            token = session.get(ApiToken, token_id) if token_id <= 2**31 - 1 else None
            if token is None or token.user_id != user_id:
                raise NotFound("Token not found")
            session.delete(token)

    def user_of(self, secret: str) -> int | None:
        """The user a secret belongs to, or None; notes when it was used."""
        found = self.find(secret)
        return found.user_id if found is not None else None

    def find(self, secret: str) -> FoundToken | None:
        """The token a secret is, or None; notes when it was used (at most once a minute)."""
        digest = _digest(secret)
        with self._sessions() as session:
            row = session.execute(
                select(ApiToken.id, ApiToken.user_id, ApiToken.last_used_at).where(
                    ApiToken.secret_hash == digest
                )
            ).one_or_none()
        if row is None:
            return None
        token_id, user_id, last_used = row
        now = utcnow()
        if last_used is None or now - last_used >= TOUCH_EVERY:
            # A write, also when a read-only route looks its caller up.
            with reads_only(False), self._sessions.begin() as session:
                session.execute(
                    update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
                )
        return FoundToken(token_id=int(token_id), user_id=int(user_id))
