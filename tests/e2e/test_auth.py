"""Registration, login and the JWT that guards every other endpoint.

Rules under test: errors answer `{"message": "..."}`; invalid input is a 400 (never a 422);
tokens are HS256 JWTs whose `sub` is the user id and which expire; anything else is a 401,
except a genuine token that names no user, which is the contract's 400 "User ID is missing"
(docs/api.md).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from jose import jwt

from testbed.stack import Stack, User
from tests.support.helpers import PROJECTS, assert_error, bearer

PASSWORD = "correct horse battery"


def fresh_email() -> str:
    return f"auth-{uuid.uuid4().hex[:10]}@example.com"


def assert_user(user: Any, *, email: str, name: str) -> None:
    assert set(user) == {"id", "email", "name"}, user
    assert isinstance(user["id"], int)
    assert user["email"] == email
    assert user["name"] == name


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(claims: dict[str, Any], secret: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def claims_for(user: User, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": str(user.id), "iat": now, "exp": now + 3600} | extra


# --- register -----------------------------------------------------------------------------


async def test_register_answers_201_with_the_user_and_a_token(stack: Stack) -> None:
    email = fresh_email()

    response = await stack.http.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada Lovelace"}
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"message", "user", "token"}
    assert body["message"] == "User registered"
    assert_user(body["user"], email=email, name="Ada Lovelace")
    assert isinstance(body["token"], str) and body["token"]
    # The token works straight away.
    listing = await stack.http.get(PROJECTS, headers=bearer(body["token"]))
    assert listing.status_code == 200, listing.text


async def test_register_token_is_an_hs256_jwt_for_the_user_that_expires(stack: Stack) -> None:
    before = int(time.time())
    user = await stack.register()

    header = jwt.get_unverified_header(user.token)
    claims = jwt.decode(user.token, stack.settings.jwt_secret, algorithms=["HS256"])

    assert header["alg"] == "HS256"
    assert claims["sub"] == str(user.id)
    assert isinstance(claims["exp"], int)
    assert before < claims["exp"] <= int(time.time()) + stack.settings.jwt_ttl_seconds


@pytest.mark.parametrize("same_email", [str.lower, str.upper], ids=["same-case", "other-case"])
async def test_register_with_a_taken_email_is_a_conflict(
    stack: Stack, same_email: Callable[[str], str]
) -> None:
    email = fresh_email()
    first = await stack.http.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "First"}
    )
    assert first.status_code == 201, first.text

    again = await stack.http.post(
        "/api/auth/register",
        json={"email": same_email(email), "password": PASSWORD + "!", "name": "Second"},
    )

    assert_error(again, 409)
    # The first registration is untouched: its password still logs in.
    login = await stack.http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["user"]["name"] == "First"


INVALID_REGISTRATIONS: dict[str, dict[str, Any]] = {
    "bad-email": {"json": {"email": "not-an-email", "password": PASSWORD, "name": "A"}},
    "email-without-domain": {"json": {"email": "ada@", "password": PASSWORD, "name": "A"}},
    "short-password": {"json": {"email": "@", "password": "seven77", "name": "A"}},
    "missing-name": {"json": {"email": "@", "password": PASSWORD}},
    "blank-name": {"json": {"email": "@", "password": PASSWORD, "name": "   "}},
    "missing-email": {"json": {"password": PASSWORD, "name": "A"}},
    "missing-password": {"json": {"email": "@", "name": "A"}},
    "name-not-a-string": {"json": {"email": "@", "password": PASSWORD, "name": 42}},
    "json-array": {"json": []},
    "malformed-json": {
        "content": b'{"email": "a@example.com", "password":',
        "headers": {"Content-Type": "application/json"},
    },
    "empty-body": {"content": b"", "headers": {"Content-Type": "application/json"}},
}


@pytest.mark.parametrize("case", list(INVALID_REGISTRATIONS), ids=list(INVALID_REGISTRATIONS))
async def test_register_with_invalid_input_is_a_bad_request(stack: Stack, case: str) -> None:
    request = dict(INVALID_REGISTRATIONS[case])
    email = fresh_email()
    if isinstance(request.get("json"), dict) and request["json"].get("email") == "@":
        request["json"] = request["json"] | {"email": email}  # valid and unused: only X is wrong

    response = await stack.http.post("/api/auth/register", **request)

    assert_error(response, 400)
    # Nothing was registered under the (otherwise valid) email.
    login = await stack.http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert_error(login, 401)


# --- login --------------------------------------------------------------------------------


async def test_login_answers_200_with_the_user_and_a_working_token(stack: Stack) -> None:
    user = await stack.register()

    response = await stack.http.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "user", "token"}
    assert body["message"] == "Logged in"
    assert_user(body["user"], email=user.email, name="Jane Doe")
    assert body["user"]["id"] == user.id
    claims = jwt.decode(body["token"], stack.settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == str(user.id) and "exp" in claims
    listing = await stack.http.get(PROJECTS, headers=bearer(body["token"]))
    assert listing.status_code == 200, listing.text


async def test_login_email_is_case_insensitive(stack: Stack) -> None:
    user = await stack.register()

    response = await stack.http.post(
        "/api/auth/login", json={"email": user.email.upper(), "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == user.id


async def test_login_with_wrong_credentials_is_unauthorized_without_saying_which(
    stack: Stack,
) -> None:
    user = await stack.register()

    wrong_password = await stack.http.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD + "x"}
    )
    unknown_email = await stack.http.post(
        "/api/auth/login", json={"email": fresh_email(), "password": PASSWORD}
    )

    assert assert_error(wrong_password, 401) == assert_error(unknown_email, 401)
    assert "token" not in wrong_password.json()


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"content": b'{"email": ', "headers": {"Content-Type": "application/json"}},
        {"json": {"email": "someone@example.com"}},
        {"json": {"password": PASSWORD}},
    ],
    ids=["malformed-json", "missing-password", "missing-email"],
)
async def test_login_with_invalid_input_is_a_bad_request(
    stack: Stack, request_kwargs: dict[str, Any]
) -> None:
    response = await stack.http.post("/api/auth/login", **request_kwargs)

    assert_error(response, 400)


# --- tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Token abc"],
    ids=["no-header", "empty", "bearer-only", "basic-scheme", "other-scheme"],
)
async def test_a_request_without_a_bearer_token_is_unauthorized(
    stack: Stack, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await stack.http.get(PROJECTS, headers=headers)

    assert_error(response, 401)


async def test_a_valid_token_sent_without_the_bearer_scheme_is_unauthorized(
    stack: Stack,
) -> None:
    user = await stack.register()

    response = await stack.http.get(PROJECTS, headers={"Authorization": user.token})

    assert_error(response, 401)


def _alg_none(stack: Stack, user: User) -> str:
    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims_for(user))}."


def _alg_none_uppercase(stack: Stack, user: User) -> str:
    return f"{b64url({'alg': 'None', 'typ': 'JWT'})}.{b64url(claims_for(user))}."


def _tampered(stack: Stack, user: User) -> str:
    """A genuine token with its payload swapped for one naming another user."""
    header, _payload, signature = user.token.split(".")
    return f"{header}.{b64url(claims_for(user, sub=str(user.id + 1)))}.{signature}"


BAD_TOKENS: dict[str, Callable[[Stack, User], str]] = {
    "garbage": lambda stack, user: "not-a-jwt",
    "three-garbage-parts": lambda stack, user: "abc.def.ghi",
    "truncated": lambda stack, user: user.token[:-10],
    "expired": lambda stack, user: signed(
        claims_for(user, iat=int(time.time()) - 7200, exp=int(time.time()) - 60),
        stack.settings.jwt_secret,
    ),
    "wrong-secret": lambda stack, user: signed(claims_for(user), "another-secret-entirely-1234"),
    "alg-none": _alg_none,
    "alg-None": _alg_none_uppercase,
    "alg-none-with-real-signature": lambda stack, user: (
        f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims_for(user))}."
        + user.token.split(".")[2]
    ),
    "hs512-with-the-right-secret": lambda stack, user: signed(
        claims_for(user), stack.settings.jwt_secret, algorithm="HS512"
    ),
    "no-expiry": lambda stack, user: signed({"sub": str(user.id)}, stack.settings.jwt_secret),
    "tampered-payload": _tampered,
    "unknown-user": lambda stack, user: signed(
        claims_for(user, sub="987654321"), stack.settings.jwt_secret
    ),
    "non-numeric-subject": lambda stack, user: signed(
        claims_for(user, sub="admin"), stack.settings.jwt_secret
    ),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS), ids=list(BAD_TOKENS))
async def test_an_invalid_token_is_unauthorized(stack: Stack, kind: str) -> None:
    user = await stack.register()
    token = BAD_TOKENS[kind](stack, user)

    response = await stack.http.get(PROJECTS, headers=bearer(token))

    assert_error(response, 401)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", PROJECTS), ("GET", "/api/build/1"), ("POST", "/api/build/rebuild/1")],
    ids=["list-projects", "get-build", "rebuild"],
)
@pytest.mark.parametrize("subject", [None, ""], ids=["no-sub", "empty-sub"])
async def test_a_genuine_token_without_a_user_id_is_a_bad_request(
    stack: Stack, method: str, path: str, subject: str | None
) -> None:
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + 3600}
    if subject is not None:
        claims["sub"] = subject
    token = signed(claims, stack.settings.jwt_secret)

    response = await stack.http.request(method, path, headers=bearer(token))

    assert_error(response, 400)
