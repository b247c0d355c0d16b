"""Projects: create (which queues the first build at the branch head), change, delete, read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, case, delete, select, union_all
from sqlalchemy.orm import Session

from kiln.access import owned_project
from kiln.builds import queue_new
from kiln.db import SessionFactory, reads_only
from kiln.git import Credentials, repo_key, resolve_branch
from kiln.images import check_image
from kiln.models import Build, BuildStatus, Project
from kiln.quotas import UserLimits, check_new_builds, check_new_project, lock_owner
from kiln.records import NEWEST_BUILDS, RECORD_COLUMNS, project_record, queue_positions
from kiln.repos import check_repo_url
from kiln.settings import Settings
from kiln.workflow_ids import WORKFLOW_ID_PREFIX

# The settings an owner may change after creation (model attribute names).
PATCHABLE = frozenset(
    {"name", "image", "build_command", "timeout_seconds", "max_concurrent_builds", "env"}
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
    env: dict[str, str] = field(default_factory=dict)


def allowed_image(image: str, settings: Settings) -> None:
    """ImageRefused unless builds may use `image` (it may resolve DNS: blocks)."""
    check_image(
        image,
        allowed_registries=settings.allowed_registries,
        allow_local=settings.allow_local_repos,
    )


def resolve_head(
    repo_url: str, branch: str, settings: Settings, auth: Credentials | None = None
) -> str:
    """The branch's head commit; RepoRefused or GitError when it cannot be had (blocks). A
    server that stops sending is dropped after `git_stall_seconds`; `auth` are the
    repository's credentials."""
    pin = check_repo_url(repo_url, allow_local=settings.allow_local_repos)
    return resolve_branch(
        repo_url,
        branch,
        timeout=settings.git_timeout_seconds,
        pin=pin,
        stall=settings.git_stall_seconds,
        auth=auth,
    )


def prepare(new: NewProject, settings: Settings, auth: Credentials | None = None) -> str:
    """Check what a new project would make Kiln fetch; its branch's head commit (blocks)."""
    allowed_image(new.image, settings)
    return resolve_head(new.repo_url, new.branch, settings, auth)


class ProjectService:
    """Projects over one database; with `limits`, a user's projects and queued builds are
    capped."""

    def __init__(self, sessions: SessionFactory, limits: UserLimits | None = None) -> None:
        self._sessions = sessions
        self._limits = limits

    def check_room(self, owner_id: int) -> None:
        """LimitReached if the user could not create a project now (a cheap early look; the
        binding check is in `create`)."""
        if self._limits is None:
            return
        with self._sessions() as session:
            check_new_project(session, owner_id, self._limits)
            check_new_builds(session, owner_id, self._limits, 1)

    def create(
        self,
        owner_id: int,
        new: NewProject,
        head: str,
        seal_credentials: Callable[[int], str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The project and its first build, queued at `head`: their records. LimitReached
        when the user has as many projects, or builds waiting, as allowed. With
        `seal_credentials` (project id -> its sealed git credentials, kiln.secrets), the
        project has git credentials from the start."""
        with self._sessions.begin() as session:
            if self._limits is not None:
                lock_owner(session, owner_id)
                check_new_project(session, owner_id, self._limits)
                check_new_builds(session, owner_id, self._limits, 1)
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
                env=dict(new.env),
            )
            session.add(project)
            (build,) = queue_new(
                session, [Build(project=project, branch=new.branch, commit_hash=head)]
            )
            if seal_credentials is not None:
                project.git_credentials = seal_credentials(project.id)
            return project_record(project), build

    def check_owner(self, owner_id: int, project_id: int) -> None:
        """NotFound or Forbidden unless the project exists and is the user's."""
        with self._sessions() as session:
            owned_project(session, project_id, owner_id)

    def list_owned(self, owner_id: int) -> list[dict[str, Any]]:
        """The owner's projects, each with its newest builds (NEWEST_BUILDS), in a few queries
        whose cost does not grow with the history's length."""
        with reads_only(), self._sessions() as session:
            projects = session.scalars(
                select(Project).where(Project.owner_id == owner_id).order_by(Project.id)
            ).all()
            ids = [project.id for project in projects]
            by_project: dict[int, list[BuildRow]] = {project_id: [] for project_id in ids}
            for build in _newest_builds(session, ids):
                by_project[build.project_id].append(build)
            positions = queue_positions(session, ids)
            prefix = session.info.get(WORKFLOW_ID_PREFIX, "")
            return [
                project_record(
                    p,
                    positions=positions,
                    with_builds=True,
                    builds=by_project[p.id],
                    id_prefix=prefix,
                )
                for p in projects
            ]

    def get(self, owner_id: int, project_id: int) -> dict[str, Any]:
        # One snapshot: the builds and their places in the queue must agree.
        with reads_only(), self._sessions() as session:
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
        """Delete the project; the database deletes its builds and logs with it (one statement,
        however many builds). Returns the builds that were still in flight, running ones first
        (they are the ones holding containers)."""
        with self._sessions.begin() as session:
            owned_project(session, project_id, owner_id)
            running_first = case((Build.status == BuildStatus.RUNNING, 0), else_=1)
            active = session.scalars(
                select(Build.id)
                .where(
                    Build.project_id == project_id,
                    Build.status.in_([BuildStatus.RUNNING, BuildStatus.QUEUED]),
                )
                .order_by(running_first, Build.id)
            ).all()
            session.expunge_all()  # nothing loaded may be flushed or cascaded by the ORM
            session.execute(delete(Project).where(Project.id == project_id))
            return list(active)


# SQLite allows 500 SELECTs in one compound statement.
_PROJECTS_PER_QUERY = 400
# A row of RECORD_COLUMNS (its fields by name, as kiln.records.BuildFields).
BuildRow = Row[*tuple[Any, ...]]


def _newest_builds(session: Session, project_ids: list[int]) -> list[BuildRow]:
    """Each project's newest NEWEST_BUILDS builds as rows of RECORD_COLUMNS, newest first: one
    index-ordered LIMIT per project (a window over all their builds would read every build
    ever made)."""
    found: list[BuildRow] = []
    for start in range(0, len(project_ids), _PROJECTS_PER_QUERY):
        newest = [
            select(Build.id)
            .where(Build.project_id == project_id)
            .order_by(Build.id.desc())
            .limit(NEWEST_BUILDS)
            .subquery()
            .select()
            for project_id in project_ids[start : start + _PROJECTS_PER_QUERY]
        ]
        found += session.execute(
            select(*RECORD_COLUMNS).where(Build.id.in_(union_all(*newest)))
        ).all()
    return sorted(found, key=lambda build: build.id, reverse=True)
