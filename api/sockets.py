"""The Socket.io server: a client proves who it is at connect and joins only its own room.

A socket lives no longer than its token: each is disconnected when the token it connected with
expires (a timer per socket, set at connect, cancelled at disconnect). Browsers may connect from
this Kiln's own origin (the `Origin` names the host the request was sent to) or from an origin
in `KILN_CORS_ORIGINS`; clients that send no `Origin` (not browsers) are fine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import socketio
from jose import jwt
from starlette.concurrency import run_in_threadpool

from api.pubsub import DatabaseManager
from api.security import InvalidToken, MissingSubject, user_id_from_token
from kiln.db import SessionFactory
from kiln.models import User
from kiln.records import user_room
from kiln.settings import Settings
from kiln.tokens import TokenService, looks_like_api_token

TOKEN_ROOM = "token:"


def token_room(token_id: int) -> str:
    """The sockets that connected with one API token (so revoking it can drop them)."""
    return f"{TOKEN_ROOM}{token_id}"


log = logging.getLogger(__name__)
NAMESPACE = "/"


def _origin(value: str) -> str:
    return value.strip().rstrip("/").lower()


def origin_check(settings: Settings) -> Any:
    """python-socketio's `cors_allowed_origins` as a check of each handshake's Origin.

    An empty list would switch the library's check off; this allows the same origin (the
    Origin's host and port are the request's `Host`) and the configured origins only."""
    configured = {_origin(origin) for origin in settings.cors_origins}

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if not origin:
            return True
        if _origin(origin) in configured:
            return True
        host = str(environ.get("HTTP_HOST", "")).strip().lower()
        try:
            netloc = urlsplit(origin.strip()).netloc.lower()
        except ValueError:
            return False
        return bool(host) and netloc == host

    return allowed


def token_expiry(token: str) -> float | None:
    """The `exp` of a token already verified, as a Unix time."""
    exp = jwt.get_unverified_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) else None


class SocketManager(DatabaseManager):
    """The pub/sub manager, where closing a token's room disconnects its sockets.

    `close_room` is the one room-wide operation python-socketio sends to every API process
    (through the database, like events); a revoked token's sockets may be on any of them."""

    async def _handle_close_room(self, message: dict[str, Any]) -> None:
        room, namespace = message.get("room"), message.get("namespace") or NAMESPACE
        if isinstance(room, str) and room.startswith(TOKEN_ROOM):
            for sid in [sid for sid, _eio in self.get_participants(namespace, room)]:
                log.info("socket %s disconnected: its API token was revoked", sid)
                await self.server.disconnect(sid, namespace=namespace, ignore_queue=True)
        await super()._handle_close_room(message)


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """The AsyncServer, plus the timers that end each socket with its token."""

    def __init__(self, on_count: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expiry_timers: dict[str, asyncio.Task[None]] = {}
        # The sockets past authentication, and who is told their number (the metrics).
        self._admitted: set[str] = set()
        self._on_count = on_count

    def admitted(self, sid: str) -> None:
        self._admitted.add(sid)
        self._on_count(len(self._admitted))

    def left(self, sid: str) -> None:
        if sid in self._admitted:
            self._admitted.discard(sid)
            self._on_count(len(self._admitted))

    def expire_at(self, sid: str, expires: float) -> None:
        """Disconnect `sid` at Unix time `expires`."""
        self.cancel_expiry(sid)
        self.expiry_timers[sid] = asyncio.create_task(self._expire(sid, expires))

    def cancel_expiry(self, sid: str) -> None:
        timer = self.expiry_timers.pop(sid, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _expire(self, sid: str, expires: float) -> None:
        await asyncio.sleep(max(0.0, expires - time.time()))
        self.expiry_timers.pop(sid, None)
        log.info("socket %s disconnected: its token expired", sid)
        await self.disconnect(sid, namespace=NAMESPACE)

    async def disconnect_token(self, token_id: int) -> None:
        """Disconnect every socket that connected with the API token, in every API process."""
        await self.close_room(token_room(token_id), namespace=NAMESPACE)


def create_socket_server(
    settings: Settings,
    sessions: SessionFactory,
    manager: SocketManager,
    on_count: Callable[[int], None] = lambda _count: None,
) -> SocketServer:
    """The Socket.io server; `on_count` hears how many sockets are connected, at each change."""
    sio = SocketServer(
        on_count,
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=origin_check(settings),
    )

    def known_user(user_id: int) -> bool:
        with sessions() as session:
            return session.get(User, user_id) is not None

    tokens = TokenService(sessions)

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, _environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("authentication token is missing")
        if looks_like_api_token(token):
            # An API token has no expiry: it lasts until revoked (revoking disconnects it).
            found = await run_in_threadpool(tokens.find, token)
            if found is None:
                raise socketio.exceptions.ConnectionRefusedError("token is invalid")
            await sio.enter_room(sid, user_room(found.user_id))
            await sio.enter_room(sid, token_room(found.token_id))
            sio.admitted(sid)
            return
        try:
            user_id = user_id_from_token(token, settings.jwt_secret)
        except (InvalidToken, MissingSubject):
            raise socketio.exceptions.ConnectionRefusedError("token is invalid") from None
        if not await run_in_threadpool(known_user, user_id):
            raise socketio.exceptions.ConnectionRefusedError("token is invalid")
        expires = token_expiry(token)
        if expires is None:  # user_id_from_token requires `exp`: never here
            raise socketio.exceptions.ConnectionRefusedError("token is invalid")
        await sio.enter_room(sid, user_room(user_id))
        sio.expire_at(sid, expires)
        sio.admitted(sid)

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, _reason: Any = None) -> None:
        sio.cancel_expiry(sid)
        sio.left(sid)

    return sio
