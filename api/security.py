"""Passwords (argon2) and access tokens (JWT, HS256 only)."""

from __future__ import annotations

import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import JWTError, jwt

ALGORITHM = "HS256"
_hasher = PasswordHasher()


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or not HS256."""


class MissingSubject(Exception):
    """The token is genuine but names no user."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_token(user_id: int, secret: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def user_id_from_token(token: str, secret: str) -> int:
    try:
        # The algorithm is pinned: tokens signed otherwise (or "none") are refused.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require_exp": True})
    except JWTError as exc:
        raise InvalidToken(str(exc)) from None
    subject = claims.get("sub")
    if subject is None or subject == "":
        raise MissingSubject()
    try:
        return int(subject)
    except (TypeError, ValueError):
        raise InvalidToken("subject is not a user id") from None
