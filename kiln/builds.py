"""Every change of a build's state, in one place: queue, claim a slot (queued → running),
finish, and which builds a freed slot wakes. Each change commits together with the Socket.io
event that announces it. The API, the activities and the reconciler call this service; none of
them writes a status itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kiln.access import owned_build
from kiln.contracts import BuildOutcome, SlotClaim
from kiln.db import SessionFactory
from kiln.errors import Conflict
from kiln.events import announce, announce_output
from kiln.git import CommitInfo
from kiln.logs import append_log
from kiln.models import Build, BuildStatus, Project, utcnow
from kiln.quotas import UserLimits, check_new_builds, lock_owner, may_run_another, owned_builds
from kiln.records import build_record, queue_positions


@dataclass(frozen=True)
class JobSpec:
    """What a host needs to run a build (read on the host: never through Temporal)."""

    repo_url: str
    commit_hash: str
    image: str
    command: str
    owner_id: int
    timeout_seconds: int


def queue_new(session: Session, builds: Sequence[Build]) -> list[dict[str, Any]]:
    """Add new `queued` builds in the caller's transaction, with their events; their records."""
    session.add_all(builds)
    session.flush()
    for build in builds:
        announce(session, build)
    positions = queue_positions(session, {build.project_id for build in builds})
    return [build_record(build, positions) for build in builds]


def _count(
    session: Session, project_id: int, status: BuildStatus, below_id: int | None = None
) -> int:
    query = select(func.count()).where(Build.project_id == project_id, Build.status == status)
    if below_id is not None:
        query = query.where(Build.id < below_id)
    return int(session.scalar(query) or 0)


def _slot_takers(session: Session, build_id: int) -> list[int]:
    """The oldest queued builds of a running build's project, as many as it has free slots."""
    build = session.get(Build, build_id)
    project = session.get(Project, build.project_id) if build is not None else None
    if project is None or project.max_concurrent_builds <= 1:  # the build holds the one slot
        return []
    free = project.max_concurrent_builds - _count(session, project.id, BuildStatus.RUNNING)
    if free <= 0:
        return []
    query = (
        select(Build.id)
        .where(Build.project_id == project.id, Build.status == BuildStatus.QUEUED)
        .order_by(Build.id)
        .limit(free)
    )
    return list(session.scalars(query))


class BuildService:
    """Build state changes over one database. With `limits`, a user's queued builds are capped
    at `rebuild` and their running builds at `claim_slot`."""

    def __init__(self, sessions: SessionFactory, limits: UserLimits | None = None) -> None:
        self._sessions = sessions
        self._limits = limits

    def rebuild(self, user_id: int, build_id: int) -> dict[str, Any]:
        """A new `queued` build at the original's commit (the original is left as it was);
        LimitReached when the user has as many builds waiting as allowed."""
        with self._sessions.begin() as session:
            if self._limits is not None:
                lock_owner(session, user_id)
            original = owned_build(session, build_id, user_id)
            if self._limits is not None:
                check_new_builds(session, user_id, self._limits, 1)
            copy = Build(
                project_id=original.project_id,
                commit=original.commit,
                branch=original.branch,
                commit_author=original.commit_author,
                commit_hash=original.commit_hash,
            )
            return queue_new(session, [copy])[0]

    def cancellable(self, user_id: int, build_id: int) -> dict[str, Any]:
        """The record of the caller's build, if it can still be canceled (else Conflict)."""
        with self._sessions() as session:
            build = owned_build(session, build_id, user_id)
            if build.status.is_final:
                raise Conflict(f"Build already finished ({build.status})")
            return build_record(build, queue_positions(session, [build.project_id]))

    def claim_slot(self, build_id: int) -> SlotClaim:
        """queued → running when the project has a free slot, no older build of the project
        waits, and the owner runs fewer builds than their limit."""
        with self._sessions.begin() as session:
            return self._claim(session, build_id)

    def claim_and_wake(self, build_id: int) -> tuple[SlotClaim, list[int]]:
        """`claim_slot`, and once the build holds a slot, the project's oldest waiting builds
        that its free slots may start (in the claim's transaction, under the project's lock).
        One of them may have looked before this older build took its slot, and been told to
        wait."""
        with self._sessions.begin() as session:
            claim = self._claim(session, build_id)
            return claim, _slot_takers(session, build_id) if claim is SlotClaim.STARTED else []

    def _claim(self, session: Session, build_id: int) -> SlotClaim:
        build = session.get(Build, build_id)
        if build is None or build.status.is_final:
            return SlotClaim.FINAL
        if build.status == BuildStatus.RUNNING:  # claimed before a crash or replay
            return SlotClaim.STARTED
        owner_id = session.scalar(select(Project.owner_id).where(Project.id == build.project_id))
        if owner_id is None:  # the project is being deleted, and the build with it
            return SlotClaim.FINAL
        if self._limits is not None:
            lock_owner(session, owner_id)  # the owner's claims, one at a time
        # The project row lock serialises claims of one project (PostgreSQL; SQLite's
        # transactions are serial already).
        project = session.scalar(
            select(Project).where(Project.id == build.project_id).with_for_update()
        )
        if project is None:  # deleted meanwhile
            return SlotClaim.FINAL
        running = _count(session, project.id, BuildStatus.RUNNING)
        older_waiting = _count(session, project.id, BuildStatus.QUEUED, below_id=build_id)
        if running >= project.max_concurrent_builds or older_waiting:
            return SlotClaim.WAITING
        if self._limits is not None and not may_run_another(session, owner_id, self._limits):
            return SlotClaim.WAITING
        build.status = BuildStatus.RUNNING
        announce(session, build)
        return SlotClaim.STARTED

    def finish(self, outcome: BuildOutcome) -> list[int]:
        """Record the final status once (a repeated call is a no-op). Returns the builds that
        may now take the freed slot: the project's, oldest first, then — when this build freed
        the owner's last running slot — the next build of each of the owner's other projects."""
        with self._sessions.begin() as session:
            build = session.scalar(
                select(Build).where(Build.id == outcome.build_id).with_for_update()
            )
            if build is None:
                return []
            if not build.status.is_final:
                build.status = outcome.status
                build.exit_code = outcome.exit_code
                build.finished_at = utcnow()
                if outcome.reason:
                    self._append_reason(session, build, outcome.reason)
                announce(session, build)
            waiting = self._waiting(session, build.project_id)
            return waiting + self._waiting_for_owner(session, build.project_id, waiting)

    def _waiting_for_owner(
        self, session: Session, project_id: int, already: list[int]
    ) -> list[int]:
        """Builds of the owner's other projects that the owner's running limit held back and
        that may start now. Only when the owner runs exactly one build fewer than the limit:
        then this finish may be what freed the slot (a concurrent finish sees the same, so
        one of them always wakes); below that, no build is waiting for the owner's slot."""
        if self._limits is None:
            return []
        owner_id = session.scalar(select(Project.owner_id).where(Project.id == project_id))
        if owner_id is None:
            return []
        limit = self._limits.max_running_builds
        if owned_builds(session, owner_id, BuildStatus.RUNNING) != limit - 1:
            return []
        return [b for b in self._heads_of_owner(session, owner_id, limit) if b not in already]

    @staticmethod
    def _heads_of_owner(session: Session, owner_id: int, limit: int) -> list[int]:
        """The oldest queued build of each of the owner's projects, oldest first, at most
        `limit` of them."""
        heads = (
            select(func.min(Build.id))
            .join(Project, Build.project_id == Project.id)
            .where(Project.owner_id == owner_id, Build.status == BuildStatus.QUEUED)
            .group_by(Build.project_id)
            .order_by(func.min(Build.id))
            .limit(limit)
        )
        return [int(build_id) for build_id in session.scalars(heads)]

    def waiting_of_owner(self, owner_id: int) -> list[int]:
        """The next build of each of the owner's projects: the ones to wake when running builds
        of the owner went away without finishing (their project was deleted)."""
        limit = self._limits.max_running_builds if self._limits else 100
        with self._sessions() as session:
            return self._heads_of_owner(session, owner_id, limit)

    @staticmethod
    def _append_reason(session: Session, build: Build, reason: str) -> None:
        """The last line of the log, sent live too (a client following events sees it)."""
        line = f"\n[kiln] {reason}\n".encode()
        end = append_log(session, build.id, line)
        owner_id = session.scalar(select(Project.owner_id).where(Project.id == build.project_id))
        if owner_id is not None:
            announce_output(session, build.id, owner_id, end - len(line), line)

    def waiting(self, project_id: int) -> list[int]:
        """The project's queued builds that a free slot would start, oldest first."""
        with self._sessions() as session:
            return self._waiting(session, project_id)

    @staticmethod
    def _waiting(session: Session, project_id: int) -> list[int]:
        project = session.get(Project, project_id)
        limit = project.max_concurrent_builds if project else 1
        waiting = session.scalars(
            select(Build.id)
            .where(Build.project_id == project_id, Build.status == BuildStatus.QUEUED)
            .order_by(Build.id)
            .limit(limit)
        )
        return list(waiting)

    def job_spec(self, build_id: int) -> JobSpec | None:
        """What the build runs, or None when it no longer exists."""
        with self._sessions() as session:
            row = session.execute(
                select(Build.commit_hash, Project.repo_url, Project.image, Project.build_command)
                .add_columns(Project.owner_id, Project.timeout_seconds)
                .join(Project, Build.project_id == Project.id)
                .where(Build.id == build_id)
            ).one_or_none()
        if row is None:
            return None
        commit_hash, repo_url, image, command, owner_id, timeout_seconds = row
        return JobSpec(repo_url, commit_hash, image, command, owner_id, timeout_seconds)

    def fill_commit_info(self, build_id: int, info: CommitInfo) -> None:
        """Builds queued without a push payload learn their message and author from the
        checkout."""
        with self._sessions.begin() as session:
            build = session.get(Build, build_id)
            if build is None:
                return
            if not build.commit:
                build.commit = info.message
            if not build.commit_author:
                build.commit_author = info.author

    def unfinished(self, min_age: timedelta) -> list[int]:
        """Builds `queued` or `running` since longer than `min_age` (for the reconciler)."""
        with self._sessions() as session:
            query = select(Build.id).where(
                Build.status.in_([BuildStatus.QUEUED, BuildStatus.RUNNING]),
                Build.started_at < utcnow() - min_age,
            )
            return list(session.scalars(query.order_by(Build.id)))
