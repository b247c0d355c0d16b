"""The JSON shapes the API and the events share: the seed's build record and project record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kiln.models import Build, Project


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as the API page shows it."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def build_record(build: Build) -> dict[str, Any]:
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
    }


def project_summary(project: Project) -> dict[str, Any]:
    """The project as nested in a build: the fields the API page shows."""
    return {
        "id": project.id,
        "name": project.name,
        "repoUrl": project.repo_url,
        "branch": project.branch,
    }


def project_record(project: Project, *, with_builds: bool = False) -> dict[str, Any]:
    record = project_summary(project) | {
        "image": project.image,
        "buildCommand": project.build_command,
        "createdAt": iso(project.created_at),
    }
    if with_builds:
        record["builds"] = [build_record(build) for build in project.builds]
    return record


def user_room(user_id: int) -> str:
    """The Socket.io room of one user's sockets: build events go only there."""
    return f"user:{user_id}"
