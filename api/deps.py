"""Dependencies the routes declare: the database session, the caller, the Temporal client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from temporalio.client import Client

from api.security import InvalidToken, MissingSubject, user_id_from_token
from kiln.db import SessionFactory
from kiln.models import User
from kiln.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


def get_session(sessions: Annotated[SessionFactory, Depends(get_sessions)]) -> Iterator[Session]:
    with sessions() as session:
        yield session


def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]
SessionDep = Annotated[Session, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def get_current_user_id(request: Request, settings: SettingsDep, sessions: SessionsDep) -> int:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "Authorization token is missing", headers=UNAUTHORIZED)
    try:
        user_id = user_id_from_token(token.strip(), settings.jwt_secret)
    except InvalidToken:
        raise HTTPException(401, "Authorization token is invalid", headers=UNAUTHORIZED) from None
    except MissingSubject:
        raise HTTPException(400, "User ID is missing") from None
    with sessions() as session:
        if session.get(User, user_id) is None:
            raise HTTPException(401, "Authorization token is invalid", headers=UNAUTHORIZED)
    return user_id


CurrentUserId = Annotated[int, Depends(get_current_user_id)]


def parse_id(raw: str, name: str) -> int:
    """Ids arrive as path text: anything but a positive whole number is a 400, not a 422."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 30 or int(raw) == 0:
        raise HTTPException(400, f"{name} must be a positive integer")
    return int(raw)
