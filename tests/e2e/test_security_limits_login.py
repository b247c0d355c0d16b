"""Logins cannot be brute-forced or used to find accounts: failed logins are throttled per
account and per client address (429 with Retry-After, even for the right password, until the
window has passed), counted in the database so that every API process agrees, and an unknown
email takes as long to refuse as a wrong password.

Clients speak from distinct loopback addresses (127.0.0.x: all of 127/8 is this machine), so
each test has addresses of its own.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from testbed.stack import Stack, running_api
from tests.support.helpers import assert_error

PASSWORD = "correct horse battery"
LOGIN = "/api/auth/login"
MAX_FAILURES = 5
WINDOW_SECONDS = 120


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    return {"login_max_failures": MAX_FAILURES, "login_window_seconds": WINDOW_SECONDS}


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Stack:
    """The shared stack, with this module's limits."""
    return stack


@asynccontextmanager
async def client_at(base_url: str, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections come from `address`."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30) as client:
        yield client


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


def unknown_email() -> str:
    return f"nobody-{uuid.uuid4().hex[:10]}@example.com"


def assert_throttled(response: httpx.Response) -> int:
    """A 429 with a message and a Retry-After within the window: the seconds to wait."""
    message = assert_error(response, 429)
    assert "too many failed logins" in message.lower(), message
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= WINDOW_SECONDS, retry_after
    return retry_after


async def test_after_too_many_wrong_passwords_even_the_right_one_is_refused_for_a_while(
    limited: Stack,
) -> None:
    victim, bystander = await limited.register(), await limited.register()
    async with client_at(limited.base_url, "127.0.0.11") as attacker:
        for _ in range(MAX_FAILURES):
            assert_error(await log_in(attacker, victim.email, PASSWORD + "?"), 401)

        assert_throttled(await log_in(attacker, victim.email, PASSWORD))
    # The account is throttled from every address, its owner's too...
    async with client_at(limited.base_url, "127.0.0.12") as owner:
        assert_throttled(await log_in(owner, victim.email, PASSWORD))
    # ...but another account, from another address, logs in as usual.
    async with client_at(limited.base_url, "127.0.0.13") as elsewhere:
        response = await log_in(elsewhere, bystander.email, PASSWORD)
    assert response.status_code == 200, response.text


async def test_one_address_guessing_across_many_accounts_is_throttled(limited: Stack) -> None:
    user = await limited.register()
    async with client_at(limited.base_url, "127.0.0.14") as sprayer:
        for _ in range(MAX_FAILURES):
            assert_error(await log_in(sprayer, unknown_email(), PASSWORD), 401)

        # Each account had a single failure; the address had too many.
        assert_throttled(await log_in(sprayer, user.email, PASSWORD))
    async with client_at(limited.base_url, "127.0.0.15") as elsewhere:
        response = await log_in(elsewhere, user.email, PASSWORD)
    assert response.status_code == 200, response.text


async def test_concurrent_guesses_get_no_more_tries_than_sequential_ones(limited: Stack) -> None:
    victim = await limited.register()
    async with client_at(limited.base_url, "127.0.0.16") as attacker:
        answers = await asyncio.gather(
            *(log_in(attacker, victim.email, f"guess {n}") for n in range(4 * MAX_FAILURES))
        )

    statuses = sorted(response.status_code for response in answers)
    assert statuses == [401] * MAX_FAILURES + [429] * (3 * MAX_FAILURES), statuses


async def test_every_api_process_counts_the_same_failures(limited: Stack) -> None:
    victim = await limited.register()
    async with (
        running_api(limited.settings) as second_api,
        client_at(limited.base_url, "127.0.0.17") as first,
        client_at(second_api, "127.0.0.17") as second,
    ):
        # The guesses alternate between two API processes on the one database.
        for attempt in range(MAX_FAILURES):
            client = first if attempt % 2 else second
            assert_error(await log_in(client, victim.email, PASSWORD + "!"), 401)

        assert_throttled(await log_in(first, victim.email, PASSWORD))
        assert_throttled(await log_in(second, victim.email, PASSWORD))


async def test_an_unknown_email_is_refused_as_slowly_as_a_wrong_password(limited: Stack) -> None:
    samples = 5
    known = [await limited.register() for _ in range(samples)]
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    for n, user in enumerate(known):
        # One address per pair of attempts, so no address reaches the limit.
        async with client_at(limited.base_url, f"127.0.0.{30 + n}") as client:
            await log_in(client, unknown_email(), PASSWORD)  # warm the connection
            for kind, email in (("known", user.email), ("unknown", unknown_email())):
                started = time.monotonic()
                response = await log_in(client, email, PASSWORD + "x")
                times[kind].append(time.monotonic() - started)
                assert_error(response, 401)

    known_median, unknown_median = (statistics.median(times[k]) for k in ("known", "unknown"))
    assert unknown_median >= 0.5 * known_median, times
