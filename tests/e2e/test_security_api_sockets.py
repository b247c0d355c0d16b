"""Socket.io abuse: a socket outliving its token, and a browser page of another origin.

- A socket is disconnected when the token it connected with expires; a fresh token connects.
- Revoking an API token disconnects the sockets that connected with it, on every API process.
- With `KILN_CORS_ORIGINS` empty, only the API's own origin (the `Origin` names the host the
  request went to) may connect, besides clients that send no `Origin` (not browsers). Origins
  listed there may connect too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
import socketio
from jose import jwt

from api.security import create_token
from testbed.stack import SocketRecorder, Stack, eventually, running_api
from tests.support.helpers import holds

EVIL = "http://evil.example"
APP = "http://app.example"


async def connect(base_url: str, token: str, origin: str | None) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    headers = {"Origin": origin} if origin is not None else {}
    await client.connect(
        base_url, auth={"token": token}, headers=headers, transports=["websocket"], wait_timeout=10
    )
    return client


async def assert_refused(base_url: str, token: str, origin: str | None) -> None:
    client = socketio.AsyncClient(reconnection=False)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(
                base_url,
                auth={"token": token},
                headers={"Origin": origin} if origin is not None else {},
                transports=["websocket"],
                wait_timeout=10,
            )
        assert not client.connected
    finally:
        await client.disconnect()
        if client.eio.http is not None:  # the refused client's HTTP session
            await client.eio.http.close()


# --- token expiry -----------------------------------------------------------------------------


async def test_a_socket_is_disconnected_when_its_token_expires(stack: Stack) -> None:
    user = await stack.register()
    short = create_token(user.id, stack.settings.jwt_secret, ttl_seconds=2)
    expires = jwt.get_unverified_claims(short)["exp"]
    expiring, lasting = SocketRecorder(), SocketRecorder()
    await expiring.connect(stack.base_url, short)
    await lasting.connect(stack.base_url, user.token)
    try:
        assert expiring.client.connected

        await eventually(lambda: holds(not expiring.client.connected), timeout=15)

        gone = time.time()
        assert gone >= expires - 0.5, f"cut {expires - gone:.1f}s before the token expired"
        assert gone <= expires + 3, f"still connected {gone - expires:.1f}s after expiry"
        # The other socket of the same user, with a token of a day, stays.
        assert lasting.client.connected
        # A fresh token connects, and stays past the old one's expiry.
        fresh = SocketRecorder()
        await fresh.connect(stack.base_url, create_token(user.id, stack.settings.jwt_secret, 60))
        try:
            assert fresh.client.connected
        finally:
            await fresh.client.disconnect()
        assert lasting.client.connected
    finally:
        await expiring.client.disconnect()
        await lasting.client.disconnect()


async def test_an_expired_token_is_refused_at_connect(stack: Stack) -> None:
    user = await stack.register()
    expired = create_token(user.id, stack.settings.jwt_secret, ttl_seconds=-1)

    await assert_refused(stack.base_url, expired, None)


# --- origins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [EVIL, "null", "http://localhost.evil.example", "https://127.0.0.1.evil.example"],
)
async def test_a_websocket_from_another_origin_is_refused(stack: Stack, origin: str) -> None:
    user = await stack.register()

    await assert_refused(stack.base_url, user.token, origin)


async def test_another_port_of_the_same_host_is_another_origin(stack: Stack) -> None:
    user = await stack.register()
    host, port = stack.base_url.rsplit(":", 1)

    await assert_refused(stack.base_url, user.token, f"{host}:{int(port) + 1}")


@pytest.mark.parametrize("origin", ["same", None], ids=["same origin", "no origin"])
async def test_the_apis_own_origin_and_clients_without_one_connect(
    stack: Stack, origin: str | None
) -> None:
    user = await stack.register()

    client = await connect(stack.base_url, user.token, stack.base_url if origin else None)

    try:
        assert client.connected
    finally:
        await client.disconnect()


@pytest.fixture(scope="module")
async def with_app_origin(stack: Stack) -> AsyncIterator[str]:
    """A second API on the same database whose KILN_CORS_ORIGINS lists APP."""
    settings = stack.settings.model_copy(update={"cors_origins": [APP]})
    async with running_api(settings) as base_url:
        yield base_url


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [(APP, True), (EVIL, False), ("same", True), (None, True)],
    ids=["configured", "evil", "same origin", "no origin"],
)
async def test_a_configured_origin_connects_and_others_still_do_not(
    stack: Stack, with_app_origin: str, origin: str | None, accepted: bool
) -> None:
    user = await stack.register()
    sent = with_app_origin if origin == "same" else origin

    if not accepted:
        await assert_refused(with_app_origin, user.token, sent)
        return
    client = await connect(with_app_origin, user.token, sent)
    try:
        assert client.connected
    finally:
        await client.disconnect()


# --- API token revocation ---------------------------------------------------------------------


async def test_revoking_an_api_token_drops_its_sockets_on_every_api_process(
    stack: Stack, with_app_origin: str
) -> None:
    user = await stack.register()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        created = await http.post("/api/tokens", json={"name": "ci"}, headers=user.headers)
        assert created.status_code == 201, created.text
        kept = await http.post("/api/tokens", json={"name": "laptop"}, headers=user.headers)
        token_id, secret = created.json()["token"]["id"], created.json()["secret"]
        # One socket on this API process, one on the other; one more with another token.
        here = await connect(stack.base_url, secret, None)
        there = await connect(with_app_origin, secret, None)
        other = await connect(with_app_origin, kept.json()["secret"], None)
        try:
            revoked = await http.delete(f"/api/tokens/{token_id}", headers=user.headers)
            assert revoked.status_code == 200, revoked.text

            await eventually(lambda: holds(not here.connected and not there.connected), timeout=15)
            assert other.connected
            await assert_refused(with_app_origin, secret, None)
        finally:
            for client in (here, there, other):
                await client.disconnect()
