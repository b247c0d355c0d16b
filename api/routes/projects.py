"""Projects: create (which queues the first build), list with builds, fetch, change, delete."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, HTTPException
from starlette.concurrency import run_in_threadpool

from api.deps import (
    BuildsDep,
    CurrentUser,
    GitPoolDep,
    ProjectId,
    ProjectsDep,
    SettingsDep,
    WorkflowsDep,
)
from api.queueing import start_builds, write_builds
from api.routes.secrets import SecretsDep
from api.schemas import (
    ProjectAnswer,
    ProjectCreated,
    ProjectDeleted,
    ProjectIn,
    ProjectPatch,
    ProjectsFetched,
    errors,
)
from kiln.builds import BuildService
from kiln.contracts import Trigger
from kiln.git import GitError, redact
from kiln.gitpool import GitPool
from kiln.images import ImageRefused
from kiln.projects import NewProject, allowed_image, prepare
from kiln.repos import RepoRefused
from kiln.secrets import split_credentials
from workflows.client import Workflows

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/project", tags=["projects"])
OWNED = (400, 401, 403, 404)
# Cancels sent at once after a project is deleted (each one is a Temporal call).
CANCELS_AT_ONCE = 8
T = TypeVar("T")

# API field → model attribute, for the settings PATCH may change.
PATCHABLE = {
    "name": "name",
    "image": "image",
    "buildCommand": "build_command",
    "timeoutSeconds": "timeout_seconds",
    "maxConcurrentBuilds": "max_concurrent_builds",
    "env": "env",
}


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectCreated,
    responses=errors(400, 401, 429, 500, 503),
)
async def create_project(
    body: ProjectIn,
    user: CurrentUser,
    projects: ProjectsDep,
    builds: BuildsDep,
    settings: SettingsDep,
    workflows: WorkflowsDep,
    pool: GitPoolDep,
    store: SecretsDep,
) -> dict[str, Any]:
    """Check the image and resolve the branch head (in the git pool), then create the project
    with its first build pinned to that commit. Credentials in the URL
    (`https://user:token@host/...`) move to the secret store."""
    try:
        repo_url, credentials = split_credentials(body.repoUrl)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    if credentials is not None and not store.available:
        raise HTTPException(503, "git credentials need KILN_SECRETS_KEY, which is not set")
    new = NewProject(
        name=body.name,
        repo_url=repo_url,
        branch=body.branch,
        image=body.image,
        build_command=body.buildCommand,
        timeout_seconds=body.timeoutSeconds,
        max_concurrent_builds=body.maxConcurrentBuilds,
        env=body.env,
    )
    # Over a limit: say so before any network work.
    await run_in_threadpool(projects.check_room, user.id)
    head = await _fetching(
        pool, user.id, lambda: prepare(new, settings, credentials), branch=body.branch
    )
    project, build = await write_builds(
        lambda: projects.create(user.id, new, head, store.sealer(credentials)),
        "Failed to create the project",
    )
    await start_builds(builds, workflows, [build], Trigger.PROJECT)
    log.info("project %s created from %s", project["id"], redact(repo_url))
    return {"message": "Project created", "project": project, "build": build}


async def _fetching(
    pool: GitPool, user_id: int, work: Callable[[], T], *, branch: str | None = None
) -> T:
    """Run network checks in the git pool; what they refuse is a 400 saying why."""
    try:
        return await pool.run(user_id, work)
    except (RepoRefused, ImageRefused) as exc:
        raise HTTPException(400, str(exc)) from None
    except GitError as exc:
        raise HTTPException(400, f"Could not resolve branch '{branch}': {exc}") from None


@router.get("/projects", response_model=ProjectsFetched, responses=errors(401))
def list_projects(user: CurrentUser, projects: ProjectsDep) -> dict[str, Any]:
    return {"message": "Projects fetched", "projects": projects.list_owned(user.id)}


@router.get("/projects/{projectId}", response_model=ProjectAnswer, responses=errors(*OWNED))
def get_project(project_id: ProjectId, user: CurrentUser, projects: ProjectsDep) -> dict[str, Any]:
    return {"message": "Project fetched", "project": projects.get(user.id, project_id)}


@router.patch("/projects/{projectId}", response_model=ProjectAnswer, responses=errors(*OWNED, 429))
async def update_project(
    project_id: ProjectId,
    body: ProjectPatch,
    user: CurrentUser,
    projects: ProjectsDep,
    workflows: WorkflowsDep,
    settings: SettingsDep,
    pool: GitPoolDep,
) -> dict[str, Any]:
    """Change settings; they apply to builds that start from now on."""
    changes = body.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise HTTPException(400, f"{field} may not be null")
    if "image" in changes:  # its registry is looked up: only for the project's owner
        await run_in_threadpool(projects.check_owner, user.id, project_id)
        image = changes["image"]
        await _fetching(pool, user.id, lambda: allowed_image(image, settings))
    attributes = {PATCHABLE[field]: value for field, value in changes.items()}
    record, waiting = await run_in_threadpool(projects.update, user.id, project_id, attributes)
    if "maxConcurrentBuilds" in changes:
        await workflows.wake(waiting)  # more slots may be free now
    return {"message": "Project updated", "project": record}


@router.delete("/projects/{projectId}", response_model=ProjectDeleted, responses=errors(*OWNED))
async def delete_project(
    project_id: ProjectId,
    user: CurrentUser,
    projects: ProjectsDep,
    builds: BuildsDep,
    workflows: WorkflowsDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Delete the project and its builds at once; their workflows are canceled after the
    answer (running builds first: their containers are stopped and removed)."""
    active = await run_in_threadpool(projects.delete, user.id, project_id)
    background.add_task(stop_builds, builds, workflows, user.id, active)
    return {"message": "Project deleted", "projectId": project_id}


async def stop_builds(
    builds: BuildService, workflows: Workflows, owner_id: int, build_ids: list[int]
) -> None:
    """Cancel the workflows of a deleted project's builds, a few at a time. One that is missed
    (Temporal away, the API stopping) still ends: a queued build finds its record gone when it
    next looks for a slot. Then wake the owner's other builds: the deleted running builds no
    longer count against the owner's running limit."""
    gate = asyncio.Semaphore(CANCELS_AT_ONCE)

    async def cancel(build_id: int) -> None:
        async with gate:
            try:
                await workflows.cancel(build_id)
            except Exception as exc:  # Temporal away: see above
                log.info("cancel of build %s after project delete: %s", build_id, exc)

    await asyncio.gather(*(cancel(build_id) for build_id in build_ids))
    if not build_ids:
        return
    try:
        await workflows.wake(await run_in_threadpool(builds.waiting_of_owner, owner_id))
    except Exception as exc:  # they look again by themselves within 30 s
        log.info("waking the builds of user %s after project delete: %s", owner_id, exc)
