"""One user cannot freeze the API: resolving a branch runs in its own bounded pool with a cap per
user, and a git server that accepts connections and never answers is dropped after the stall
limit (`git_stall_seconds`), not after the 120 s git timeout.

The attack: a server on 127.0.0.1 that accepts every connection and never sends a byte, and one
user firing many project creations at it at once (before the fix they took every request
thread, so other users' logins and listings timed out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpx
import pytest

from testbed.stack import Stack
from tests.support.helpers import PROJECTS, assert_error, new_repo

STALL_SECONDS = 4
PER_USER = 2
# Answers that must not wait behind the attacker's git work: generous, this is no benchmark.
QUICK = 2.0
# More creations than the API has request threads (anyio's default: 40).
ATTACK = 45


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    return {"git_stall_seconds": STALL_SECONDS, "git_per_user": PER_USER, "git_pool_size": 4}


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Stack:
    """The shared stack, with this module's limits."""
    return stack


@pytest.fixture
async def silent_repo_url() -> AsyncIterator[str]:
    """A "git server" on 127.0.0.1 that accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/silent.git"
    finally:
        server.close()


async def timed(request: Coroutine[Any, Any, httpx.Response]) -> tuple[httpx.Response, float]:
    """The response, and how long it took."""
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_one_user_flooding_a_silent_git_server_gets_429s_and_freezes_nobody_else(
    limited: Stack, silent_repo_url: str
) -> None:
    attacker, other = await limited.register(), await limited.register()
    body = {"name": "stuck", "repoUrl": silent_repo_url, "image": limited.image}
    attack = [
        asyncio.create_task(
            timed(limited.http.post(PROJECTS, json=body, headers=attacker.headers, timeout=180))
        )
        for _ in range(ATTACK)
    ]

    # Beyond the per-user cap, the answer is a 429 at once, with a message and Retry-After.
    refused: list[httpx.Response] = []
    while len(refused) < ATTACK - PER_USER:
        done, _pending = await asyncio.wait(
            attack, timeout=QUICK * 5, return_when="FIRST_COMPLETED"
        )
        assert done, "no creation over the cap was refused quickly"
        for task in done:
            attack.remove(task)
            response, elapsed = task.result()
            assert response.status_code == 429, response.text
            assert elapsed < QUICK * 5, elapsed
            refused.append(response)
    for response in refused:
        assert "at most 2 per user" in assert_error(response, 429)
        assert int(response.headers["Retry-After"]) > 0
    assert len(attack) == PER_USER  # these are in git, waiting on the silent server

    # Meanwhile another user logs in, lists and creates a project, each answered quickly.
    login, login_time = await timed(
        limited.http.post(
            "/api/auth/login", json={"email": other.email, "password": "correct horse battery"}
        )
    )
    listing, listing_time = await timed(limited.http.get(PROJECTS, headers=other.headers))
    repo = new_repo(limited.git, "pool")
    created, created_time = await timed(
        limited.http.post(
            PROJECTS,
            json={
                "name": "ok",
                "repoUrl": repo.url,
                "image": limited.image,
                "buildCommand": "true",
            },
            headers=other.headers,
        )
    )
    assert login.status_code == 200, login.text
    assert listing.status_code == 200, listing.text
    assert created.status_code == 201, created.text
    assert max(login_time, listing_time, created_time) < QUICK, (
        login_time,
        listing_time,
        created_time,
    )
    assert not any(task.done() for task in attack), "the silent server was dropped too early"
    await limited.wait_final(other, created.json()["build"]["id"])

    # The silent server is dropped after the stall limit: a 400 saying why, long before 120 s.
    for response, elapsed in await asyncio.gather(*attack):
        message = assert_error(response, 400)
        assert "too slow" in message.lower(), message
        assert elapsed < STALL_SECONDS + 10, elapsed


async def test_the_users_cap_frees_once_their_git_work_has_ended(
    limited: Stack, silent_repo_url: str
) -> None:
    user = await limited.register()
    body = {"name": "stuck", "repoUrl": silent_repo_url, "image": limited.image}
    first = [
        limited.http.post(PROJECTS, json=body, headers=user.headers, timeout=60)
        for _ in range(PER_USER)
    ]
    for response in await asyncio.gather(*first):
        assert_error(response, 400)

    repo = new_repo(limited.git, "pool")
    again = await limited.http.post(
        PROJECTS,
        json={"name": "ok", "repoUrl": repo.url, "image": limited.image, "buildCommand": "true"},
        headers=user.headers,
    )

    assert again.status_code == 201, again.text
    await limited.wait_final(user, again.json()["build"]["id"])
