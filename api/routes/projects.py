"""Projects: create (which queues the first build), list with builds, fetch, change, delete."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from api.deps import BuildsDep, CurrentUser, ProjectId, ProjectsDep, SettingsDep, WorkflowsDep
from api.queueing import start_builds, write_builds
from api.schemas import (
    ProjectAnswer,
    ProjectCreated,
    ProjectDeleted,
    ProjectIn,
    ProjectPatch,
    ProjectsFetched,
    errors,
)
from kiln.git import GitError, redact
from kiln.projects import NewProject, resolve_head
from kiln.repos import RepoRefused

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/project", tags=["projects"])
OWNED = (400, 401, 403, 404)

# API field → model attribute, for the settings PATCH may change.
PATCHABLE = {
    "name": "name",
    "image": "image",
    "buildCommand": "build_command",
    "timeoutSeconds": "timeout_seconds",
    "maxConcurrentBuilds": "max_concurrent_builds",
}


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectCreated,
    responses=errors(400, 401, 500, 503),
)
async def create_project(
    body: ProjectIn,
    user: CurrentUser,
    projects: ProjectsDep,
    builds: BuildsDep,
    settings: SettingsDep,
    workflows: WorkflowsDep,
) -> dict[str, Any]:
    """Resolve the branch head, then create the project with its first build pinned to it."""
    try:
        head = await run_in_threadpool(
            lambda: resolve_head(
                body.repoUrl,
                body.branch,
                allow_local=settings.allow_local_repos,
                timeout=settings.git_timeout_seconds,
            )
        )
    except RepoRefused as exc:
        raise HTTPException(400, str(exc)) from None
    except GitError as exc:
        raise HTTPException(400, f"Could not resolve branch '{body.branch}': {exc}") from None
    new = NewProject(
        name=body.name,
        repo_url=body.repoUrl,
        branch=body.branch,
        image=body.image,
        build_command=body.buildCommand,
        timeout_seconds=body.timeoutSeconds,
        max_concurrent_builds=body.maxConcurrentBuilds,
    )
    project, build = await write_builds(
        lambda: projects.create(user.id, new, head), "Failed to create the project"
    )
    await start_builds(builds, workflows, [build])
    log.info("project %s created from %s", project["id"], redact(body.repoUrl))
    return {"message": "Project created", "project": project, "build": build}


@router.get("/projects", response_model=ProjectsFetched, responses=errors(401))
def list_projects(user: CurrentUser, projects: ProjectsDep) -> dict[str, Any]:
    return {"message": "Projects fetched", "projects": projects.list_owned(user.id)}


@router.get("/projects/{projectId}", response_model=ProjectAnswer, responses=errors(*OWNED))
def get_project(project_id: ProjectId, user: CurrentUser, projects: ProjectsDep) -> dict[str, Any]:
    return {"message": "Project fetched", "project": projects.get(user.id, project_id)}


@router.patch("/projects/{projectId}", response_model=ProjectAnswer, responses=errors(*OWNED))
async def update_project(
    project_id: ProjectId,
    body: ProjectPatch,
    user: CurrentUser,
    projects: ProjectsDep,
    workflows: WorkflowsDep,
) -> dict[str, Any]:
    """Change settings; they apply to builds that start from now on."""
    changes = body.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise HTTPException(400, f"{field} may not be null")
    attributes = {PATCHABLE[field]: value for field, value in changes.items()}
    record, waiting = await run_in_threadpool(projects.update, user.id, project_id, attributes)
    if "maxConcurrentBuilds" in changes:
        await workflows.wake(waiting)  # more slots may be free now
    return {"message": "Project updated", "project": record}


@router.delete("/projects/{projectId}", response_model=ProjectDeleted, responses=errors(*OWNED))
async def delete_project(
    project_id: ProjectId, user: CurrentUser, projects: ProjectsDep, workflows: WorkflowsDep
) -> dict[str, Any]:
    active = await run_in_threadpool(projects.delete, user.id, project_id)
    # Builds still in flight are stopped: their workflow's cleanup removes container and files.
    for build_id in active:
        try:
            await workflows.cancel(build_id)
        except Exception as exc:  # Temporal away: the reconciler settles them later
            log.info("cancel of build %s after project delete: %s", build_id, exc)
    return {"message": "Project deleted", "projectId": project_id}
