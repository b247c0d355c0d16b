"""The Socket.io server: a client proves who it is at connect and joins only its own room."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from starlette.concurrency import run_in_threadpool

from api.pubsub import DatabaseManager
from api.security import InvalidToken, MissingSubject, user_id_from_token
from kiln.db import SessionFactory
from kiln.models import User
from kiln.records import user_room
from kiln.settings import Settings

log = logging.getLogger(__name__)


def create_socket_server(
    settings: Settings, sessions: SessionFactory, manager: DatabaseManager
) -> socketio.AsyncServer:
    # Browsers from other origins need KILN_CORS_ORIGINS; clients that send no Origin are fine.
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=settings.cors_origins,
    )

    def known_user(user_id: int) -> bool:
        with sessions() as session:
            return session.get(User, user_id) is not None

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, _environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("authentication token is missing")
        try:
            user_id = user_id_from_token(token, settings.jwt_secret)
        except (InvalidToken, MissingSubject):
            raise socketio.exceptions.ConnectionRefusedError("token is invalid") from None
        if not await run_in_threadpool(known_user, user_id):
            raise socketio.exceptions.ConnectionRefusedError("token is invalid")
        await sio.enter_room(sid, user_room(user_id))

    return sio
