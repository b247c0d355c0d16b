"""DNS rebinding: the API answers only to its own host names, for REST and Socket.io.

A page on `http://evil.example` whose name is re-pointed at 127.0.0.1 sends the browser's
requests to a developer's `kiln dev` with `Host: evil.example`. Allowed by default: the listening
address, `localhost`, `127.0.0.1`, `[::1]` (any port) and `KILN_PUBLIC_URL`'s host; with
`KILN_ALLOWED_HOSTS` set, exactly those (and the public URL's host). Anything else is a 400 with
a message, before any route or handshake runs.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from testbed.stack import Stack, User, running_api
from tests.support.helpers import PROJECTS, assert_error

FOREIGN = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "[::2]", "[::1"]
OWN = ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LOCALHOST.:{port}", "[::1]:{port}"]


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


async def handshake(base_url: str, host: str) -> bytes:
    """A raw Socket.io WebSocket handshake naming `host`: the answer's status line and headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base_url))
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        writer.write(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()


@pytest.fixture(scope="module")
async def user(stack: Stack) -> User:
    return await stack.register()


@pytest.mark.parametrize("host", FOREIGN)
async def test_a_request_for_a_foreign_host_is_400(stack: Stack, user: User, host: str) -> None:
    headers = user.headers | {"Host": host.format(port=port_of(stack.base_url))}

    listed = await stack.http.get(PROJECTS, headers=headers)
    login = await stack.http.post(
        "/api/auth/login", json={"email": user.email, "password": "x"}, headers=headers
    )
    polling = await stack.http.get("/socket.io/?EIO=4&transport=polling", headers=headers)

    for response in (listed, login, polling):
        assert "KILN_ALLOWED_HOSTS" in assert_error(response, 400, str(response.request.url))


@pytest.mark.parametrize("host", OWN)
async def test_a_request_for_an_own_host_is_answered(stack: Stack, user: User, host: str) -> None:
    headers = user.headers | {"Host": host.format(port=port_of(stack.base_url))}

    response = await stack.http.get(PROJECTS, headers=headers)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", FOREIGN)
async def test_a_websocket_handshake_for_a_foreign_host_is_refused(stack: Stack, host: str) -> None:
    head = await handshake(stack.base_url, host.format(port=port_of(stack.base_url)))

    assert head.startswith(b"HTTP/1.1 400 "), head


async def test_a_websocket_handshake_for_an_own_host_upgrades(stack: Stack) -> None:
    head = await handshake(stack.base_url, f"localhost:{port_of(stack.base_url)}")

    assert head.startswith(b"HTTP/1.1 101 "), head


@pytest.fixture(scope="module")
async def configured(stack: Stack) -> AsyncIterator[str]:
    """A second API on the same database: KILN_ALLOWED_HOSTS=["kiln.example", "10.1.2.3"] and
    KILN_PUBLIC_URL=https://ci.example.org/kiln."""
    settings = stack.settings.model_copy(
        update={
            "allowed_hosts": ["kiln.example", "10.1.2.3"],
            "public_url": "https://ci.example.org/kiln",
        }
    )
    async with running_api(settings) as base_url:
        yield base_url


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("kiln.example", True),
        ("KILN.example:8443", True),
        ("10.1.2.3:80", True),
        ("ci.example.org", True),
        ("127.0.0.1:{port}", False),
        ("localhost", False),
        ("evil.example", False),
        ("sub.kiln.example", False),
    ],
)
async def test_configured_host_names_replace_the_defaults(
    configured: str, user: User, host: str, allowed: bool
) -> None:
    headers = user.headers | {"Host": host.format(port=port_of(configured))}
    async with httpx.AsyncClient(base_url=configured, timeout=30) as http:
        response = await http.get(PROJECTS, headers=headers)
    handshaken = await handshake(configured, host.format(port=port_of(configured)))

    if allowed:
        assert response.status_code == 200, response.text
        assert handshaken.startswith(b"HTTP/1.1 101 "), handshaken
    else:
        assert_error(response, 400, host)
        assert handshaken.startswith(b"HTTP/1.1 400 "), handshaken
