"""Dependencies the routes declare: the request's session, the caller, the services, Temporal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from pydantic import BeforeValidator
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.security import InvalidToken, MissingSubject, user_id_from_token
from kiln.builds import BuildService
from kiln.db import SessionFactory, reads_only
from kiln.gitpool import GitPool
from kiln.models import User
from kiln.projects import ProjectService
from kiln.quotas import UserLimits
from kiln.settings import Settings
from kiln.throttle import LoginThrottle
from kiln.tokens import TokenService, looks_like_api_token
from kiln.webhooks import WebhookService
from workflows.client import Workflows


# The accessors below are `async` only so that FastAPI runs them on the event loop: a plain
# `def` dependency costs a trip through the thread pool on every request.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


def get_session(sessions: Annotated[SessionFactory, Depends(get_sessions)]) -> Iterator[Session]:
    with sessions() as session:
        yield session


async def get_workflows(request: Request) -> Workflows:
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
SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]
WorkflowsDep = Annotated[Workflows, Depends(get_workflows)]
BuildsDep = Annotated[BuildService, Depends(get_builds)]
ProjectsDep = Annotated[ProjectService, Depends(get_projects)]
WebhooksDep = Annotated[WebhookService, Depends(get_webhooks)]
GitPoolDep = Annotated[GitPool, Depends(get_git_pool)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _bearer_token(request: Request) -> str:
    """The token of `Authorization: Bearer <token>`; a 401 without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "Authorization token is missing", headers=UNAUTHORIZED)
    return token.strip()


async def get_current_user(request: Request) -> User:
    """The caller, from `Authorization: Bearer <token>`: 401 without a valid token, 400 for a
    genuine token that names no user. Found in one trip to the thread pool (the token check
    and the user's row), with a session of its own that ends at once: on SQLite a writing
    transaction holds the write lock, and the route's services open sessions of their own."""
    token = _bearer_token(request)
    settings: Settings = request.app.state.settings
    sessions: SessionFactory = request.app.state.sessions
    return await run_in_threadpool(_caller, sessions, settings, token)


def _caller(sessions: SessionFactory, settings: Settings, token: str) -> User:
    # Read-only: on SQLite the lookup takes no write lock, so it never waits behind a worker
    # appending output (an API token's "last used" touch writes in a session of its own).
    with reads_only(), sessions() as session:
        return caller_in(session, sessions, settings, token)


def caller_in(session: Session, sessions: SessionFactory, settings: Settings, token: str) -> User:
    """The token's user, read in `session`: a 401 for an invalid token or a user that no longer
    exists, a 400 for a genuine token without a subject."""
    if looks_like_api_token(token):  # an API token (kiln_...) works wherever a login does
        user_id = TokenService(sessions).user_of(token) or 0  # 0 names no user: a 401
    else:
        try:
            user_id = user_id_from_token(token, settings.jwt_secret)
        except InvalidToken:
            user_id = 0
        except MissingSubject:
            raise HTTPException(400, "User ID is missing") from None
    user = session.get(User, user_id) if user_id else None
    if user is None:
        raise HTTPException(401, "Authorization token is invalid", headers=UNAUTHORIZED)
    return user


@dataclass(frozen=True)
class Caller:
    """The caller of a hot read route, judged inside the route's own trip to the thread pool
    and in its session (`user_in`), instead of in a trip of its own before it: the same
    answers, one hand-off and one transaction fewer a request. Only for routes whose one input
    is a path id (`get_caller` judges the token early when that id may be a 400): a query or
    a body that FastAPI rejects would be answered before a bad token."""

    token: str
    sessions: SessionFactory
    settings: Settings

    def user_in(self, session: Session) -> User:
        return caller_in(session, self.sessions, self.settings, self.token)


async def get_caller(request: Request) -> Caller:
    """A 401 at once without a token. When a path id may be a 400, the token is judged here
    first, as `get_current_user` would: an invalid token is a 401 on every route, whatever the
    path (FastAPI checks path ids only after the route's dependencies)."""
    caller = Caller(_bearer_token(request), request.app.state.sessions, request.app.state.settings)
    if not all(well_formed_id(value) for value in request.path_params.values()):
        # The route may never run: judge the token now, so that a bad one is still a 401.
        await run_in_threadpool(_caller, caller.sessions, caller.settings, caller.token)
    return caller


CurrentUser = Annotated[User, Depends(get_current_user)]
CallerDep = Annotated[Caller, Depends(get_caller)]

# Path ids: positive integers written in plain digits, at most 30 of them; anything else is a
# 400 naming the id (api.errors). Ids beyond the database's 32-bit range name nothing: a 404,
# like any id that names nothing. (The Path constraints come first, so the schema shows them
# as `minimum`/`maximum`.)
MAX_PATH_ID = 10**30 - 1


def _plain_digits(value: object) -> object:
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("not a positive integer")
    return value


def well_formed_id(raw: str) -> bool:
    """Whether a path id surely passes the checks of `BuildId` and `ProjectId` below (ids with
    leading zeros beyond 30 digits pass those too, but not this)."""
    return len(raw) <= len(str(MAX_PATH_ID)) and raw.isascii() and raw.isdigit() and int(raw) >= 1


BuildId = Annotated[
    int, Path(alias="buildId", ge=1, le=MAX_PATH_ID), BeforeValidator(_plain_digits)
]
ProjectId = Annotated[
    int, Path(alias="projectId", ge=1, le=MAX_PATH_ID), BeforeValidator(_plain_digits)
]
