"""Passwords (argon2) and access tokens (JWT, HS256 only)."""

from __future__ import annotations

import secrets
import time
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import JWTError, jwt

from kiln.access import MAX_ID

ALGORITHM = "HS256"
_hasher = PasswordHasher()
# Checked instead of a user's hash when no user has the email: refusing an unknown email then
# takes as long as refusing a wrong password, so the time does not tell which emails exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or not HS256."""


class MissingSubject(Exception):
    """The token is genuine but names no user."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (no such user), False after the same work."""
    try:
        matches = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return matches and password_hash is not None


def create_token(user_id: int, secret: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def user_id_from_token(token: str, secret: str) -> int:
    """The user a genuine, unexpired token names. A token already verified is not checked
    again while its lifetime lasts (python-jose took 75–130 µs a check, on every request; a
    kept answer takes under 1 µs): the same bytes under the same secret verify the same way,
    and only the time moves."""
    user_id, not_before, expires = _verified(token, secret)
    now = time.time()
    # A second's margin either side: at its edges the token is judged afresh, exactly as jose
    # judges it (its clock is whole seconds).
    if not_before + 1 < now < expires - 1:
        return user_id
    return _verify(token, secret)[0]


@lru_cache(maxsize=4096)
def _verified(token: str, secret: str) -> tuple[int, float, float]:
    """`_verify`'s answer, kept for the tokens that passed it (a refusal raises: not kept)."""
    return _verify(token, secret)


def _verify(token: str, secret: str) -> tuple[int, float, float]:
    """The user id, and the span in which the token is valid (nothing is kept for claims
    that are not plain numbers: such a token is judged afresh each time)."""
    try:
        # The algorithm is pinned: tokens signed otherwise (or "none") are refused.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require_exp": True})
    except JWTError as exc:
        raise InvalidToken(str(exc)) from None
    return _subject(claims), *_lifetime(claims)


def _lifetime(claims: dict[str, object]) -> tuple[float, float]:
    not_before, expires = _seconds(claims.get("nbf", 0)), _seconds(claims["exp"])
    if not_before is None or expires is None:
        return float("inf"), float("-inf")  # an empty span: never answered from what is kept
    return not_before, expires


def _seconds(claim: object) -> float | None:
    """A time claim, if it is a plain number (jose also takes numeric strings)."""
    if isinstance(claim, int | float) and not isinstance(claim, bool):
        return float(claim)
    return None


def _subject(claims: dict[str, object]) -> int:
    subject = claims.get("sub")
    if subject is None or subject == "":
        raise MissingSubject()
    # Plain digits only (no sign, spaces or other numerals), within the database's id range:
    # a larger number names no user and must not reach a query.
    if not (isinstance(subject, str) and subject.isascii() and subject.isdigit()):
        raise InvalidToken("subject is not a user id")
    if len(subject) > len(str(MAX_ID)) or not 1 <= int(subject) <= MAX_ID:
        raise InvalidToken("subject is not a user id")
    return int(subject)
