"""A project's notification hooks: create (the signing secret is shown once), list, delete.
The owner's only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from api.deps import MAX_PATH_ID, CurrentUser, ProjectId, SettingsDep, _plain_digits, get_sessions
from api.integration_schemas import HookCreated, HookDeleted, HookIn, HooksFetched
from api.routes.secrets import NO_KEY, OWNED
from api.schemas import errors
from kiln.crypto import SecretBox, SecretsUnavailable
from kiln.db import SessionFactory
from kiln.hooks import HookService

router = APIRouter(prefix="/api/project", tags=["integrations"])

HookId = Annotated[int, Path(alias="hookId", ge=1, le=MAX_PATH_ID), BeforeValidator(_plain_digits)]


def get_hooks(
    sessions: Annotated[SessionFactory, Depends(get_sessions)], settings: SettingsDep
) -> HookService:
    return HookService(
        sessions, SecretBox(settings.secrets_key), allow_local=settings.allow_local_repos
    )


HooksDep = Annotated[HookService, Depends(get_hooks)]


@router.post(
    "/projects/{projectId}/hooks",
    status_code=201,
    response_model=HookCreated,
    responses=errors(*OWNED) | NO_KEY,
)
async def create_hook(
    project_id: ProjectId, body: HookIn, user: CurrentUser, hooks: HooksDep
) -> dict[str, Any]:
    """Notify `url` on the chosen events of the project's builds queued from now on. Its URL
    follows the rules of repository URLs (no loopback or private address)."""
    if not hooks.available:
        raise HTTPException(503, str(SecretsUnavailable("hooks need KILN_SECRETS_KEY")))
    # The URL check resolves its host: off the event loop.
    record, secret = await run_in_threadpool(
        hooks.create, user.id, project_id, body.url, body.events
    )
    return {"message": "Hook created", "hook": record, "secret": secret}


@router.get("/projects/{projectId}/hooks", response_model=HooksFetched, responses=errors(*OWNED))
def list_hooks(project_id: ProjectId, user: CurrentUser, hooks: HooksDep) -> dict[str, Any]:
    """The project's hooks, oldest first, without their secrets."""
    return {"message": "Hooks fetched", "hooks": hooks.records(user.id, project_id)}


@router.delete(
    "/projects/{projectId}/hooks/{hookId}", response_model=HookDeleted, responses=errors(*OWNED)
)
def delete_hook(
    project_id: ProjectId, hook_id: HookId, user: CurrentUser, hooks: HooksDep
) -> dict[str, Any]:
    hooks.delete(user.id, project_id, hook_id)
    return {"message": "Hook deleted", "hookId": hook_id}
