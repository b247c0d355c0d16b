"""Dependencies the routes declare: the request's session, the caller, the services, Temporal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from api.security import InvalidToken, MissingSubject, user_id_from_token
from kiln.builds import BuildService
from kiln.db import SessionFactory
from kiln.gitpool import GitPool
from kiln.models import User
from kiln.projects import ProjectService
from kiln.quotas import UserLimits
from kiln.settings import Settings
from kiln.throttle import LoginThrottle
from kiln.tokens import TokenService, looks_like_api_token
from kiln.webhooks import WebhookService
from workflows.client import Workflows


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


def get_session(sessions: Annotated[SessionFactory, Depends(get_sessions)]) -> Iterator[Session]:
    with sessions() as session:
        yield session


def get_workflows(request: Request) -> Workflows:
    workflows: Workflows = request.app.state.workflows
    return workflows


def get_builds(
    sessions: Annotated[SessionFactory, Depends(get_sessions)],
    settings: Annotated[Settings, Depends(get_settings_dep)],
) -> BuildService:
    return BuildService(sessions, UserLimits.from_settings(settings))


def get_projects(
    sessions: Annotated[SessionFactory, Depends(get_sessions)],
    settings: Annotated[Settings, Depends(get_settings_dep)],
) -> ProjectService:
    return ProjectService(sessions, UserLimits.from_settings(settings))


def get_throttle(
    sessions: Annotated[SessionFactory, Depends(get_sessions)],
    settings: Annotated[Settings, Depends(get_settings_dep)],
) -> LoginThrottle:
    return LoginThrottle.from_settings(sessions, settings)


async def get_git_pool(request: Request) -> GitPool:
    """The process's pool for git and other network look-ups (made on first use; `async`, so
    it runs on the event loop and is made once)."""
    pool: GitPool | None = getattr(request.app.state, "git_pool", None)
    if pool is None:
        pool = request.app.state.git_pool = GitPool.from_settings(request.app.state.settings)
    return pool


def get_webhooks(
    sessions: Annotated[SessionFactory, Depends(get_sessions)],
    settings: Annotated[Settings, Depends(get_settings_dep)],
) -> WebhookService:
    return WebhookService(sessions, UserLimits.from_settings(settings))


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
WorkflowsDep = Annotated[Workflows, Depends(get_workflows)]
BuildsDep = Annotated[BuildService, Depends(get_builds)]
ProjectsDep = Annotated[ProjectService, Depends(get_projects)]
WebhooksDep = Annotated[WebhookService, Depends(get_webhooks)]
GitPoolDep = Annotated[GitPool, Depends(get_git_pool)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def get_current_user(request: Request, settings: SettingsDep, session: SessionDep) -> User:
    """The caller, from `Authorization: Bearer <token>`: 401 without a valid token, 400 for a
    genuine token that names no user."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "Authorization token is missing", headers=UNAUTHORIZED)
    token = token.strip()
    if looks_like_api_token(token):  # an API token (kiln_...) works wherever a login does
        found = TokenService(get_sessions(request)).user_of(token)
        user_id = found if found is not None else 0  # 0 names no user: a 401 below
    else:
        try:
            user_id = user_id_from_token(token, settings.jwt_secret)
        except InvalidToken:
            raise HTTPException(
                401, "Authorization token is invalid", headers=UNAUTHORIZED
            ) from None
        except MissingSubject:
            raise HTTPException(400, "User ID is missing") from None
    user = session.get(User, user_id) if user_id else None
    # End the read at once: on SQLite every transaction holds the write lock (BEGIN
    # IMMEDIATE), and the services the route calls next open sessions of their own.
    session.commit()
    if user is None:
        raise HTTPException(401, "Authorization token is invalid", headers=UNAUTHORIZED)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]

# Path ids: positive integers written in plain digits, at most 30 of them; anything else is a
# 400 naming the id (api.errors). Ids beyond the database's 32-bit range name nothing: a 404,
# like any id that names nothing. (The Path constraints come first, so the schema shows them
# as `minimum`/`maximum`.)
MAX_PATH_ID = 10**30 - 1


def _plain_digits(value: object) -> object:
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("not a positive integer")
    return value


BuildId = Annotated[
    int, Path(alias="buildId", ge=1, le=MAX_PATH_ID), BeforeValidator(_plain_digits)
]
ProjectId = Annotated[
    int, Path(alias="projectId", ge=1, le=MAX_PATH_ID), BeforeValidator(_plain_digits)
]
