"""Access tokens (JWT, HS256 only) and password hashes (api.security)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

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
