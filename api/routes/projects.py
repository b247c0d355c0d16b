"""Projects: create (which queues the first build), list with builds, fetch, delete."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool

from api.access import owned_project
from api.deps import CurrentUserId, SessionDep, SessionsDep, SettingsDep, TemporalDep, parse_id
from api.queueing import queue_builds
from api.schemas import ProjectIn, ProjectPatch
from kiln.git import GitError, redact, repo_key, resolve_branch
from kiln.models import Build, BuildStatus, Project
from kiln.records import project_record, queue_positions
from kiln.repos import RepoRefused, check_repo_url
from workflows.build import wake_waiting_builds, workflow_id

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/project", tags=["projects"])


def _resolve_head(body: ProjectIn, allow_local: bool, timeout: float) -> str:
    pin = check_repo_url(body.repoUrl, allow_local=allow_local)
    return resolve_branch(body.repoUrl, body.branch, timeout=timeout, pin=pin)


@router.post("/projects", status_code=201)
async def create_project(
    body: ProjectIn,
    user_id: CurrentUserId,
    sessions: SessionsDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    try:
        head = await run_in_threadpool(
            _resolve_head, body, settings.allow_local_repos, settings.git_timeout_seconds
        )
    except RepoRefused as exc:
        raise HTTPException(400, str(exc)) from None
    except GitError as exc:
        raise HTTPException(400, f"Could not resolve branch '{body.branch}': {exc}") from None

    def insert(session: Session) -> tuple[list[Build], dict[str, Any]]:
        project = Project(
            owner_id=user_id,
            name=body.name,
            repo_url=body.repoUrl,
            branch=body.branch,
            image=body.image,
            build_command=body.buildCommand,
            timeout_seconds=body.timeoutSeconds,
            max_concurrent_builds=body.maxConcurrentBuilds,
            repo_key=repo_key(body.repoUrl),
        )
        build = Build(project=project, branch=body.branch, commit_hash=head)
        session.add_all([project, build])
        session.flush()
        return [build], project_record(project)

    builds, project = await queue_builds(
        sessions, temporal, settings, insert, "Failed to create the project"
    )
    log.info("project %s created from %s", project["id"], redact(body.repoUrl))
    return {"message": "Project created", "project": project, "build": builds[0]}


@router.get("/projects")
def list_projects(user_id: CurrentUserId, session: SessionDep) -> dict[str, Any]:
    projects = session.scalars(
        select(Project)
        .where(Project.owner_id == user_id)
        .options(selectinload(Project.builds))
        .order_by(Project.id)
    ).all()
    positions = queue_positions(session, [project.id for project in projects])
    records = [project_record(p, positions=positions, with_builds=True) for p in projects]
    return {"message": "Projects fetched", "projects": records}


@router.get("/projects/{project_id}")
def get_project(project_id: str, user_id: CurrentUserId, session: SessionDep) -> dict[str, Any]:
    project = owned_project(session, parse_id(project_id, "projectId"), user_id)
    positions = queue_positions(session, [project.id])
    record = project_record(project, positions=positions, with_builds=True)
    return {"message": "Project fetched", "project": record}


# API field → model attribute, for the settings PATCH may change.
PATCHABLE = {
    "name": "name",
    "image": "image",
    "buildCommand": "build_command",
    "timeoutSeconds": "timeout_seconds",
    "maxConcurrentBuilds": "max_concurrent_builds",
}


@router.patch("/projects/{project_id}")
async def update_project(
    project_id: str,
    body: ProjectPatch,
    user_id: CurrentUserId,
    sessions: SessionsDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    """Change settings; they apply to builds that start from now on."""
    pid = parse_id(project_id, "projectId")
    changes = body.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise HTTPException(400, f"{field} may not be null")

    def update() -> tuple[dict[str, Any], list[int]]:
        with sessions.begin() as session:
            project = owned_project(session, pid, user_id)
            for field, value in changes.items():
                setattr(project, PATCHABLE[field], value)
            positions = queue_positions(session, [project.id])
            waiting = [build.id for build in project.builds if build.id in positions]
            return project_record(project, positions=positions, with_builds=True), waiting

    record, waiting = await run_in_threadpool(update)
    if "maxConcurrentBuilds" in changes:
        # More slots may be free now.
        await wake_waiting_builds(temporal, waiting, settings.workflow_id_prefix)
    return {"message": "Project updated", "project": record}


@router.delete("/projects/{project_id}")
async def delete_project(
    project_id: str,
    user_id: CurrentUserId,
    sessions: SessionsDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    pid = parse_id(project_id, "projectId")

    def remove() -> list[int]:
        with sessions.begin() as session:
            project = owned_project(session, pid, user_id)
            active = [
                build.id for build in project.builds if not BuildStatus(build.status).is_final
            ]
            session.delete(project)
            return active

    active = await run_in_threadpool(remove)
    # Builds still in flight are stopped: their workflow's cleanup removes container and files.
    for build_id in active:
        try:
            handle = temporal.get_workflow_handle(
                workflow_id(build_id, settings.workflow_id_prefix)
            )
            await handle.cancel()
        except Exception as exc:  # already finished, or never started
            log.info("cancel of build %s after project delete: %s", build_id, exc)
    return {"message": "Project deleted", "projectId": pid}
