"""The JSON shapes the API and the events share: the seed's build record and project record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from kiln.models import Build, BuildStatus, Project
from kiln.workflow_ids import WORKFLOW_ID_PREFIX, workflow_id


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as the API page shows it."""
    if moment is None:
        return None
    # isoformat ends an aware UTC time with "+00:00"; it is several times faster than strftime
    # (a listing formats two of these for each of up to thousands of builds).
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class BuildFields(Protocol):
    """What a build record is made of: a Build, or a row of RECORD_COLUMNS."""

    id: int
    status: BuildStatus
    commit: str
    branch: str
    commit_author: str
    commit_hash: str
    exit_code: int | None
    project_id: int
    started_at: datetime
    finished_at: datetime | None


# Selected as plain rows where many records are made at once (the project listing): loading
# them as ORM objects costs several times more than the record itself.
RECORD_COLUMNS = (
    Build.id,
    Build.status,
    Build.commit,
    Build.branch,
    Build.commit_author,
    Build.commit_hash,
    Build.exit_code,
    Build.project_id,
    Build.started_at,
    Build.finished_at,
)


def queue_positions(session: Session, project_ids: Iterable[int]) -> dict[int, int]:
    """Each queued build's place in its project's queue: 1 starts next."""
    query = (
        select(Build.id, Build.project_id)
        .where(Build.status == BuildStatus.QUEUED, Build.project_id.in_(set(project_ids)))
        .order_by(Build.id)
    )
    seen: Counter[int] = Counter()
    positions = {}
    for build_id, project_id in session.execute(query):
        seen[project_id] += 1
        positions[build_id] = seen[project_id]
    return positions


def build_workflow_id(build: Build) -> str:
    """The id of the build's workflow. The prefix (KILN_WORKFLOW_ID_PREFIX) comes with the
    session the build was read or added in (kiln.db.make_session_factory puts it there); a
    build outside any session gets none."""
    session = object_session(build)
    prefix = session.info.get(WORKFLOW_ID_PREFIX, "") if session is not None else ""
    return workflow_id(build.id, prefix)


def build_record(
    build: BuildFields,
    positions: Mapping[int, int] | None = None,
    *,
    id_prefix: str | None = None,
) -> dict[str, Any]:
    """The API page's build record, plus `queuePosition` while the build waits and
    `workflowId`, the id of its workflow in Temporal. A row (not a Build) comes with the
    deployment's `id_prefix`; a Build's is its session's."""
    workflow = (
        workflow_id(build.id, id_prefix) if id_prefix is not None else build_workflow_id(build)  # type: ignore[arg-type]  # without a prefix: a Build
    )
    return {
        "id": build.id,
        "status": build.status,
        "commit": build.commit,
        "branch": build.branch,
        "commitAuthor": build.commit_author,
        "commitHash": build.commit_hash,
        "exitCode": build.exit_code,
        "projectId": build.project_id,
        "startedAt": iso(build.started_at),
        "finishedAt": iso(build.finished_at),
        "queuePosition": (positions or {}).get(build.id)
        if build.status == BuildStatus.QUEUED
        else None,
        "workflowId": workflow,
    }


def project_summary(project: Project) -> dict[str, Any]:
    """The project as nested in a build: the fields the API page shows."""
    return {
        "id": project.id,
        "name": project.name,
        "repoUrl": project.repo_url,
        "branch": project.branch,
    }


# A project record carries its newest builds only: a long history is paged in
# (GET /api/project/projects/{projectId}/builds), never returned whole.
NEWEST_BUILDS = 20


def project_record(
    project: Project,
    *,
    positions: Mapping[int, int] | None = None,
    with_builds: bool = False,
    builds: Sequence[BuildFields] | None = None,
    id_prefix: str | None = None,
) -> dict[str, Any]:
    """The project as its owner sees it, webhook secret included; with its newest builds
    (`builds`, newest first, when the caller has loaded them: rows come with `id_prefix`)."""
    record = project_summary(project) | {
        "image": project.image,
        "buildCommand": project.build_command,
        "timeoutSeconds": project.timeout_seconds,
        "maxConcurrentBuilds": project.max_concurrent_builds,
        "webhookSecret": project.webhook_secret,
        "env": dict(project.env or {}),
        "hasCredentials": project.git_credentials is not None,
        "hasGithubToken": project.github_token is not None,
        "createdAt": iso(project.created_at),
    }
    if with_builds:
        newest = builds if builds is not None else project.builds[:NEWEST_BUILDS]
        record["builds"] = [build_record(build, positions, id_prefix=id_prefix) for build in newest]
    return record


def user_room(user_id: int) -> str:
    """The Socket.io room of one user's sockets: build events go only there."""
    return f"user:{user_id}"
