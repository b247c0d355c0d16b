"""Projects: create (which queues the first build at the branch head), change, delete, read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from kiln.access import owned_project
from kiln.builds import queue_new
from kiln.db import SessionFactory
from kiln.git import repo_key, resolve_branch
from kiln.models import Build, Project
from kiln.records import project_record, queue_positions
from kiln.repos import check_repo_url

# The settings an owner may change after creation (model attribute names).
PATCHABLE = frozenset(
    {"name", "image", "build_command", "timeout_seconds", "max_concurrent_builds"}
)


@dataclass(frozen=True)
class NewProject:
    name: str
    repo_url: str
    branch: str
    image: str
    build_command: str
    timeout_seconds: int
    max_concurrent_builds: int


def resolve_head(repo_url: str, branch: str, *, allow_local: bool, timeout: float) -> str:
    """The branch's head commit; RepoRefused or GitError when it cannot be had (blocks)."""
    pin = check_repo_url(repo_url, allow_local=allow_local)
    return resolve_branch(repo_url, branch, timeout=timeout, pin=pin)


class ProjectService:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def create(
        self, owner_id: int, new: NewProject, head: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The project and its first build, queued at `head`: their records."""
        with self._sessions.begin() as session:
            project = Project(
                owner_id=owner_id,
                name=new.name,
                repo_url=new.repo_url,
                repo_key=repo_key(new.repo_url),
                branch=new.branch,
                image=new.image,
                build_command=new.build_command,
                timeout_seconds=new.timeout_seconds,
                max_concurrent_builds=new.max_concurrent_builds,
            )
            session.add(project)
            (build,) = queue_new(
                session, [Build(project=project, branch=new.branch, commit_hash=head)]
            )
            return project_record(project), build

    def list_owned(self, owner_id: int) -> list[dict[str, Any]]:
        with self._sessions() as session:
            projects = session.scalars(
                select(Project)
                .where(Project.owner_id == owner_id)
                .options(selectinload(Project.builds))
                .order_by(Project.id)
            ).all()
            positions = queue_positions(session, [project.id for project in projects])
            return [project_record(p, positions=positions, with_builds=True) for p in projects]

    def get(self, owner_id: int, project_id: int) -> dict[str, Any]:
        with self._sessions() as session:
            project = owned_project(session, project_id, owner_id)
            positions = queue_positions(session, [project.id])
            return project_record(project, positions=positions, with_builds=True)

    def update(
        self, owner_id: int, project_id: int, changes: dict[str, Any]
    ) -> tuple[dict[str, Any], list[int]]:
        """Apply `changes` (attribute → value, PATCHABLE only): the new record, and the
        project's waiting builds (more slots may be free now)."""
        assert set(changes) <= PATCHABLE, changes
        with self._sessions.begin() as session:
            project = owned_project(session, project_id, owner_id)
            for attribute, value in changes.items():
                setattr(project, attribute, value)
            positions = queue_positions(session, [project.id])
            waiting = [build.id for build in project.builds if build.id in positions]
            return project_record(project, positions=positions, with_builds=True), waiting

    def delete(self, owner_id: int, project_id: int) -> list[int]:
        """Delete the project and its builds; returns the builds that were still in flight."""
        with self._sessions.begin() as session:
            project = owned_project(session, project_id, owner_id)
            active = [build.id for build in project.builds if not build.status.is_final]
            session.delete(project)
            return active
