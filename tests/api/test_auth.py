"""Register, log in, and the bearer token every other endpoint needs (docs/api.md,
Authentication): 401 with `WWW-Authenticate: Bearer` for a missing or invalid token, 400
"User ID is missing" for a genuine token that names nobody."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from jose import jwt
from sqlalchemy import delete

from kiln.models import User as UserRow
from kiln.settings import Settings
from tests.api.support import (
    PASSWORD,
    PROJECTS,
    Api,
    User,
    assert_error,
    token_for,
    valid_claims,
)

MISSING = "Authorization token is missing"
INVALID = "Authorization token is invalid"


def assert_unauthorized(response: httpx.Response, message: str) -> None:
    assert assert_error(response, 401) == message
    assert response.headers["WWW-Authenticate"] == "Bearer"


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
async def user(api: Api) -> User:
    return await api.register()


# --- register and log in --------------------------------------------------------------------


async def test_register_answers_201_with_the_user_in_lower_case_and_a_token(api: Api) -> None:
    response = await api.http.post(
        "/api/auth/register",
        json={"email": "Mixed.Case@Example.COM", "password": PASSWORD, "name": " Jane Doe "},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"message", "user", "token"}
    assert body["message"] == "User registered"
    assert set(body["user"]) == {"id", "email", "name"}
    assert isinstance(body["user"]["id"], int)
    assert body["user"]["email"] == "mixed.case@example.com"
    assert body["user"]["name"] == "Jane Doe"
    listed = await api.http.get(PROJECTS, headers={"Authorization": f"Bearer {body['token']}"})
    assert listed.status_code == 200, listed.text


async def test_the_token_is_an_hs256_jwt_naming_the_user_that_expires(api: Api, user: User) -> None:
    header = jwt.get_unverified_header(user.token)
    claims = jwt.get_unverified_claims(user.token)

    assert header["alg"] == "HS256"
    assert claims["sub"] == str(user.id)
    assert claims["exp"] - claims["iat"] == api.settings.jwt_ttl_seconds
    assert abs(claims["iat"] - time.time()) < 60


async def test_registering_a_taken_email_in_any_case_is_a_conflict(api: Api, user: User) -> None:
    again = await api.http.post(
        "/api/auth/register",
        json={"email": user.email.upper(), "password": "another password", "name": "Other"},
    )

    assert assert_error(again, 409) == "Email is already registered"


async def test_login_answers_200_with_the_user_and_a_working_token(api: Api, user: User) -> None:
    response = await api.http.post(
        "/api/auth/login", json={"email": user.email.upper(), "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "user", "token"}
    assert body["message"] == "Logged in"
    assert body["user"] == {"id": user.id, "email": user.email, "name": "Jane Doe"}
    listed = await api.http.get(PROJECTS, headers={"Authorization": f"Bearer {body['token']}"})
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize(
    "credentials",
    [
        {"password": "wrong password"},
        {"email": "nobody@example.com"},
        {"password": f" {PASSWORD}"},  # passwords are not trimmed
    ],
    ids=["wrong-password", "unknown-email", "password-with-a-space"],
)
async def test_login_with_wrong_credentials_is_401_without_saying_which(
    api: Api, user: User, credentials: dict[str, str]
) -> None:
    body = {"email": user.email, "password": PASSWORD} | credentials

    response = await api.http.post("/api/auth/login", json=body)

    assert assert_error(response, 401) == "Invalid email or password"


REGISTER_INVALID: dict[str, tuple[Any, str]] = {
    "short-password": (
        {"email": "a@example.com", "password": "short", "name": "A"},
        "password: String should have at least 8 characters",
    ),
    "empty-name": (
        {"email": "a@example.com", "password": PASSWORD, "name": "  "},
        "name: String should have at least 1 character",
    ),
    "missing-name": ({"email": "a@example.com", "password": PASSWORD}, "name: Field required"),
    "extra-field": (
        {"email": "a@example.com", "password": PASSWORD, "name": "A", "admin": True},
        "admin: Extra inputs are not permitted",
    ),
    "not-an-object": (
        ["a@example.com"],
        "Input should be a valid dictionary or object to extract fields from",
    ),
}


@pytest.mark.parametrize(("body", "message"), REGISTER_INVALID.values(), ids=REGISTER_INVALID)
async def test_register_with_invalid_input_is_a_400_naming_the_problem(
    api: Api, body: Any, message: str
) -> None:
    response = await api.http.post("/api/auth/register", json=body)

    assert assert_error(response, 400) == message


async def test_register_with_an_invalid_email_is_a_400_naming_the_field(api: Api) -> None:
    response = await api.http.post(
        "/api/auth/register", json={"email": "not-an-email", "password": PASSWORD, "name": "A"}
    )

    assert assert_error(response, 400).startswith("email: value is not a valid email address")


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "Field required"), (b"{not json", "Request body is not valid JSON")],
    ids=["no-body", "not-json"],
)
async def test_login_without_a_json_body_is_a_400(
    api: Api, content: bytes | None, message: str
) -> None:
    response = await api.http.post(
        "/api/auth/login", content=content, headers={"Content-Type": "application/json"}
    )

    assert assert_error(response, 400) == message


async def test_login_without_a_password_is_a_400_naming_it(api: Api, user: User) -> None:
    response = await api.http.post("/api/auth/login", json={"email": user.email})

    assert assert_error(response, 400) == "password: Field required"


# --- the bearer token -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc"],
    ids=["no-header", "empty", "scheme-only", "blank-token", "basic", "other-scheme"],
)
async def test_a_request_without_a_bearer_token_is_401_missing(
    api: Api, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await api.http.get(PROJECTS, headers=headers)

    assert_unauthorized(response, MISSING)


async def test_a_bare_token_without_the_scheme_is_401(api: Api, user: User) -> None:
    response = await api.http.get(PROJECTS, headers={"Authorization": user.token})

    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_the_scheme_word_is_matched_case_insensitively(api: Api, user: User) -> None:
    response = await api.http.get(PROJECTS, headers={"Authorization": f"bEaReR {user.token}"})

    assert response.status_code == 200, response.text


def _alg_none(settings: Settings, user: User) -> str:
    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(valid_claims(user.id))}."


def _tampered(settings: Settings, user: User) -> str:
    header, _claims, signature = user.token.split(".")
    return f"{header}.{b64url(valid_claims(user.id + 1))}.{signature}"


def _expired(settings: Settings, user: User) -> str:
    past = int(time.time()) - 7200
    return token_for(settings, valid_claims(user.id, iat=past, exp=past + 60))


BAD_TOKENS: dict[str, Callable[[Settings, User], str]] = {
    "garbage": lambda settings, user: "not-a-jwt",
    "truncated": lambda settings, user: user.token[:-8],
    "expired": _expired,
    "wrong-secret": lambda settings, user: jwt.encode(
        valid_claims(user.id), "another-secret-entirely-0123456789", algorithm="HS256"
    ),
    "alg-none": _alg_none,
    "hs512-with-the-right-secret": lambda settings, user: token_for(
        settings, valid_claims(user.id), algorithm="HS512"
    ),
    "no-expiry": lambda settings, user: token_for(settings, {"sub": str(user.id)}),
    "tampered-subject": _tampered,
    "non-numeric-subject": lambda settings, user: token_for(settings, valid_claims(None, sub="me")),
    "unknown-user": lambda settings, user: token_for(settings, valid_claims(987654321)),
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_an_invalid_token_is_401_invalid(api: Api, user: User, kind: str) -> None:
    token = BAD_TOKENS[kind](api.settings, user)

    response = await api.http.get(PROJECTS, headers={"Authorization": f"Bearer {token}"})

    assert_unauthorized(response, INVALID)


BUILD_READS = ["/api/build/1", "/api/build/0001", "/api/build/not-a-number", "/api/build/0"]


@pytest.mark.parametrize("path", BUILD_READS)
@pytest.mark.parametrize("kind", [*BAD_TOKENS, "unknown-api-token"])
async def test_an_invalid_token_is_401_invalid_on_a_build_read_whatever_its_id(
    api: Api, user: User, kind: str, path: str
) -> None:
    # The hot read judges its caller inside its own database trip: the answers must not move.
    token = (
        "kiln_" + "0" * 40 if kind == "unknown-api-token" else BAD_TOKENS[kind](api.settings, user)
    )

    response = await api.http.get(path, headers={"Authorization": f"Bearer {token}"})

    assert_unauthorized(response, INVALID)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", PROJECTS), ("GET", "/api/build/1"), ("POST", "/api/build/rebuild/1")],
)
@pytest.mark.parametrize("subject", [None, ""], ids=["no-sub", "empty-sub"])
async def test_a_genuine_token_without_a_subject_is_400_user_id_is_missing(
    api: Api, method: str, path: str, subject: str | None
) -> None:
    claims = valid_claims(None) if subject is None else valid_claims(None, sub=subject)
    token = token_for(api.settings, claims)

    response = await api.http.request(method, path, headers={"Authorization": f"Bearer {token}"})

    assert assert_error(response, 400) == "User ID is missing"


async def test_the_token_of_a_deleted_user_is_401_invalid(api: Api) -> None:
    user = await api.register()
    with api.sessions.begin() as session:
        session.execute(delete(UserRow).where(UserRow.id == user.id))

    response = await api.http.get(PROJECTS, headers=user.headers)

    assert_unauthorized(response, INVALID)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/build/not-a-number", None),
        ("GET", f"{PROJECTS}/0", None),
        ("POST", PROJECTS, {"name": "", "repoUrl": "ftp://nowhere", "extra": 1}),
        ("PATCH", f"{PROJECTS}/1", {"timeoutSeconds": -1}),
    ],
    ids=["bad-build-id", "bad-project-id", "bad-project-body", "bad-patch-body"],
)
async def test_the_token_is_checked_before_the_path_id_and_the_body(
    api: Api, method: str, path: str, body: Any
) -> None:
    response = await api.http.request(method, path, json=body)

    assert_unauthorized(response, MISSING)


async def test_a_body_that_is_not_json_is_reported_before_the_token(api: Api) -> None:
    response = await api.http.post(
        PROJECTS, content=b"{oops", headers={"Content-Type": "application/json"}
    )

    assert assert_error(response, 400) == "Request body is not valid JSON"
