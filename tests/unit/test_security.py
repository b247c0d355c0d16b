"""Access tokens (JWT, HS256 only) and password hashes (api.security)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

import api.security
from api.security import (
    InvalidToken,
    MissingSubject,
    create_token,
    hash_password,
    user_id_from_token,
    verify_password,
)

SECRET = "unit-test-secret-0123456789abcdef"


def _segment(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "exp": now + 600, **extra}


def test_a_token_names_the_user_it_was_made_for() -> None:
    token = create_token(42, SECRET, ttl_seconds=60)
    assert user_id_from_token(token, SECRET) == 42


def test_a_token_expires_after_its_ttl() -> None:
    claims = jwt.get_unverified_claims(create_token(7, SECRET, ttl_seconds=90))
    assert claims["exp"] - claims["iat"] == 90
    assert claims["sub"] == "7"


def test_an_expired_token_is_invalid() -> None:
    token = jwt.encode(_claims(sub="1", exp=int(time.time()) - 10), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


def test_a_token_without_an_expiry_is_invalid() -> None:
    token = jwt.encode({"sub": "1"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


def test_a_token_signed_with_another_key_is_invalid() -> None:
    token = create_token(1, "another-secret-0123456789abcdef", ttl_seconds=60)
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


def test_a_token_with_a_tampered_subject_is_invalid() -> None:
    header, _payload, signature = create_token(1, SECRET, ttl_seconds=60).split(".")
    forged = f"{header}.{_segment(_claims(sub='2'))}.{signature}"
    with pytest.raises(InvalidToken):
        user_id_from_token(forged, SECRET)


@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_an_unsigned_alg_none_token_is_refused(signature: str) -> None:
    token = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims(sub='1'))}.{signature}"
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


def test_an_hs512_token_signed_with_the_right_secret_is_refused() -> None:
    token = jwt.encode(_claims(sub="1"), SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


def test_an_rs256_token_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    token = jwt.encode(_claims(sub="1"), pem, algorithm="RS256")
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b"])
def test_a_malformed_token_is_invalid(token: str) -> None:
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


@pytest.mark.parametrize("extra", [{}, {"sub": ""}])
def test_a_genuine_token_without_a_subject_names_no_user(extra: dict[str, Any]) -> None:
    token = jwt.encode(_claims(**extra), SECRET, algorithm="HS256")
    with pytest.raises(MissingSubject):
        user_id_from_token(token, SECRET)


@pytest.mark.parametrize("subject", ["alice", "1.5", "0x10", "1e3"])
def test_a_subject_that_is_not_an_integer_is_invalid(subject: str) -> None:
    token = jwt.encode(_claims(sub=subject), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


def test_a_subject_that_is_not_a_string_is_invalid() -> None:
    token = jwt.encode(_claims(sub=5), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        user_id_from_token(token, SECRET)


# A token verified once is answered from memory until near its expiry (api.security._verified).


@pytest.fixture
def move_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Moves the clock that Kiln and python-jose read by `seconds` (both, or a kept answer
    could outlive a refusal that jose would give); starts from a cleared memory."""
    api.security._verified.cache_clear()
    offset = [0.0]

    class Moved(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Any:
            return dt.datetime.now(tz) + dt.timedelta(seconds=offset[0])

    monkeypatch.setattr("jose.jwt.datetime", Moved)
    monkeypatch.setattr(
        api.security, "time", types.SimpleNamespace(time=lambda: time.time() + offset[0])
    )

    def move(seconds: float) -> None:
        offset[0] += seconds

    return move


def test_a_token_verified_before_is_refused_once_it_has_expired(
    move_clock: Callable[[float], None],
) -> None:
    token = create_token(42, SECRET, ttl_seconds=30)
    assert user_id_from_token(token, SECRET) == 42
    move_clock(31)
    with pytest.raises(InvalidToken, match="expired"):
        user_id_from_token(token, SECRET)
    move_clock(60)
    with pytest.raises(InvalidToken, match="expired"):
        user_id_from_token(token, SECRET)


def test_a_token_not_valid_yet_is_refused_before_its_time_and_after_a_success(
    move_clock: Callable[[float], None],
) -> None:
    token = jwt.encode(_claims(sub="3", nbf=int(time.time()) + 60), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="not yet valid"):
        user_id_from_token(token, SECRET)
    move_clock(120)
    assert user_id_from_token(token, SECRET) == 3
    move_clock(-120)
    with pytest.raises(InvalidToken, match="not yet valid"):
        user_id_from_token(token, SECRET)


def test_a_token_verified_under_one_secret_is_refused_under_another(
    move_clock: Callable[[float], None],
) -> None:
    token = create_token(1, SECRET, ttl_seconds=60)
    assert user_id_from_token(token, SECRET) == 1
    with pytest.raises(InvalidToken):
        user_id_from_token(token, "another-secret-0123456789abcdef")


def test_an_expiry_given_as_a_string_is_judged_afresh_every_time(
    move_clock: Callable[[float], None],
) -> None:
    # python-jose takes a numeric string for a time claim; Kiln keeps nothing for it.
    token = jwt.encode(_claims(sub="5", exp=str(int(time.time()) + 30)), SECRET, algorithm="HS256")
    assert user_id_from_token(token, SECRET) == 5
    move_clock(60)
    with pytest.raises(InvalidToken, match="expired"):
        user_id_from_token(token, SECRET)


def test_a_token_is_checked_by_jose_once_while_it_is_used_again_and_again(
    move_clock: Callable[[float], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        checks.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr("api.security.jwt.decode", counted)
    token = create_token(9, SECRET, ttl_seconds=600)
    assert [user_id_from_token(token, SECRET) for _ in range(5)] == [9] * 5
    assert len(checks) == 1
    forged = create_token(9, "another-secret-0123456789abcdef", ttl_seconds=600)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            user_id_from_token(forged, SECRET)
    assert len(checks) == 3  # a refusal is not kept: each try is checked


PASSWORD = "  padded secret  "


@pytest.fixture(scope="module")
def stored_hash() -> str:
    """One argon2 hash shared by the password tests (each hash or verify takes ~0.1 s)."""
    return hash_password(PASSWORD)


def test_a_password_verifies_against_its_own_hash(stored_hash: str) -> None:
    assert PASSWORD.strip() not in stored_hash
    assert verify_password(stored_hash, PASSWORD) is True


def test_another_password_does_not_verify(stored_hash: str) -> None:
    assert verify_password(stored_hash, PASSWORD + "!") is False


def test_spaces_at_the_ends_of_a_password_are_part_of_it(stored_hash: str) -> None:
    assert verify_password(stored_hash, PASSWORD.strip()) is False


def test_one_password_hashes_differently_each_time(stored_hash: str) -> None:
    assert hash_password(PASSWORD) != stored_hash


@pytest.mark.parametrize("stored", ["", "not-a-hash", "$argon2id$v=19$garbled"])
def test_a_garbled_stored_hash_verifies_nothing(stored: str) -> None:
    assert verify_password(stored, "anything") is False
