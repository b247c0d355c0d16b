"""A project's secrets (build environment variables whose values are never shown again) and its
git credentials (write-only): set, list by name, delete. The owner's only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, GitPoolDep, ProjectId, SettingsDep, get_sessions
from api.schemas import ErrorBody, errors
from kiln.db import SessionFactory
from kiln.git import GitError, resolve_branch
from kiln.repos import RepoRefused, check_repo_url
from kiln.secrets import (
    MAX_TOKEN,
    MAX_USERNAME,
    MAX_VALUE_BYTES,
    NAME_PATTERN,
    SecretStore,
    SecretsUnavailable,
    check_credentials,
)

router = APIRouter(prefix="/api/project", tags=["secrets"])
OWNED = (400, 401, 403, 404)
NO_KEY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "This Kiln has no KILN_SECRETS_KEY"}
}


def get_secret_store(
    sessions: Annotated[SessionFactory, Depends(get_sessions)], settings: SettingsDep
) -> SecretStore:
    return SecretStore.from_settings(sessions, settings)


SecretsDep = Annotated[SecretStore, Depends(get_secret_store)]
# The name's rules are checked by the store (a 400 saying which rule); the schema states them.
SecretName = Annotated[str, Path(json_schema_extra={"pattern": NAME_PATTERN})]
# No control characters in credentials (git would cut a header short at one); no ':' in a user.
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
USERNAME_PATTERN = r"^[^\x00-\x1f\x7f:]*$"


class Raw(BaseModel):
    """Values taken exactly as sent: a secret's spaces are part of it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class SecretIn(Raw):
    value: str = Field(
        description="At most 64 KiB (in UTF-8), no NUL; never shown again",
        json_schema_extra={"pattern": r"^[^\x00]*$", "maxLength": MAX_VALUE_BYTES},
    )


class CredentialsIn(Raw):
    username: str | None = Field(
        default=None,
        max_length=MAX_USERNAME,
        description="Default: x-access-token",
        json_schema_extra={"pattern": USERNAME_PATTERN},
    )
    token: str = Field(
        min_length=1, max_length=MAX_TOKEN, json_schema_extra={"pattern": NO_CONTROL}
    )


class SecretRecord(BaseModel):
    name: str
    createdAt: str  # noqa: N815
    updatedAt: str  # noqa: N815


class SecretSaved(BaseModel):
    message: str
    secret: SecretRecord


class SecretsFetched(BaseModel):
    message: str
    secrets: list[SecretRecord]


class SecretDeleted(BaseModel):
    message: str
    name: str


class CredentialsAnswer(BaseModel):
    message: str
    projectId: int  # noqa: N815
    hasCredentials: bool  # noqa: N815


def _unavailable(exc: SecretsUnavailable) -> HTTPException:
    return HTTPException(503, str(exc))


@router.put(
    "/projects/{projectId}/secrets/{name}",
    response_model=SecretSaved,
    responses=errors(*OWNED) | NO_KEY,
)
def put_secret(
    project_id: ProjectId, name: SecretName, body: SecretIn, user: CurrentUser, store: SecretsDep
) -> dict[str, Any]:
    """Create or replace a secret; builds that start from now on get it."""
    try:
        record = store.put(user.id, project_id, name, body.value)
    except SecretsUnavailable as exc:
        raise _unavailable(exc) from None
    return {"message": "Secret saved", "secret": record}


@router.get(
    "/projects/{projectId}/secrets", response_model=SecretsFetched, responses=errors(*OWNED)
)
def list_secrets(project_id: ProjectId, user: CurrentUser, store: SecretsDep) -> dict[str, Any]:
    """The project's secrets by name, never their values."""
    return {"message": "Secrets fetched", "secrets": store.records(user.id, project_id)}


@router.delete(
    "/projects/{projectId}/secrets/{name}",
    response_model=SecretDeleted,
    responses=errors(*OWNED),
)
def delete_secret(
    project_id: ProjectId, name: SecretName, user: CurrentUser, store: SecretsDep
) -> dict[str, Any]:
    store.delete(user.id, project_id, name)
    return {"message": "Secret deleted", "name": name}


@router.put(
    "/projects/{projectId}/credentials",
    response_model=CredentialsAnswer,
    responses=errors(*OWNED, 429) | NO_KEY,
)
async def put_credentials(
    project_id: ProjectId,
    body: CredentialsIn,
    user: CurrentUser,
    store: SecretsDep,
    settings: SettingsDep,
    pool: GitPoolDep,
) -> dict[str, Any]:
    """Set the git credentials the project's repository is read with (write-only). They are
    tried on the project's branch first (in the git pool, like a new project's branch):
    credentials that do not open it are a 400."""
    try:
        credentials = check_credentials(body.username, body.token)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    if not store.available:
        raise _unavailable(SecretsUnavailable("git credentials need KILN_SECRETS_KEY"))
    repo_url, branch = await run_in_threadpool(store.remote, user.id, project_id)

    def resolve() -> str:
        pin = check_repo_url(repo_url, allow_local=settings.allow_local_repos)
        return resolve_branch(
            repo_url,
            branch,
            timeout=settings.git_timeout_seconds,
            pin=pin,
            stall=settings.git_stall_seconds,
            auth=credentials,
        )

    try:
        await pool.run(user.id, resolve)
    except RepoRefused as exc:
        raise HTTPException(400, str(exc)) from None
    except GitError as exc:
        raise HTTPException(400, f"Could not resolve branch '{branch}': {exc}") from None
    try:
        await run_in_threadpool(store.set_credentials, user.id, project_id, credentials)
    except SecretsUnavailable as exc:
        raise _unavailable(exc) from None
    return {"message": "Credentials saved", "projectId": project_id, "hasCredentials": True}


@router.delete(
    "/projects/{projectId}/credentials",
    response_model=CredentialsAnswer,
    responses=errors(*OWNED),
)
def delete_credentials(
    project_id: ProjectId, user: CurrentUser, store: SecretsDep
) -> dict[str, Any]:
    """Remove the project's git credentials (404 when it has none)."""
    store.clear_credentials(user.id, project_id)
    return {"message": "Credentials removed", "projectId": project_id, "hasCredentials": False}
