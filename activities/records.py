"""Status writes: each change commits together with the Socket.io event that announces it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from temporalio import activity

from activities.types import BuildOutcome, SlotClaim
from kiln.db import SessionFactory
from kiln.events import announce
from kiln.logs import append_log
from kiln.models import Build, BuildStatus, Project, utcnow


def _locked(session: Session, build_id: int) -> Build | None:
    return session.scalar(select(Build).where(Build.id == build_id).with_for_update())


def _count(
    session: Session, project_id: int, status: BuildStatus, below_id: int | None = None
) -> int:
    query = select(func.count()).where(Build.project_id == project_id, Build.status == status)
    if below_id is not None:
        query = query.where(Build.id < below_id)
    return int(session.scalar(query) or 0)


class RecordActivities:
    """Local activities (they run beside the workflow, no task-queue round trip)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="claim_slot")
    def claim_slot(self, build_id: int) -> SlotClaim:
        """queued → running when the project has a free slot and no older build waits."""
        with self._sessions.begin() as session:
            build = session.get(Build, build_id)
            if build is None or BuildStatus(build.status).is_final:
                return SlotClaim.FINAL
            if build.status == BuildStatus.RUNNING:  # claimed before a crash or replay
                return SlotClaim.STARTED
            # The project row lock serialises claims of one project (PostgreSQL; SQLite's
            # transactions are serial already).
            project = session.scalar(
                select(Project).where(Project.id == build.project_id).with_for_update()
            )
            assert project is not None  # builds are deleted with their project
            running = _count(session, project.id, BuildStatus.RUNNING)
            older_waiting = _count(session, project.id, BuildStatus.QUEUED, below_id=build_id)
            if running >= project.max_concurrent_builds or older_waiting:
                return SlotClaim.WAITING
            build.status = BuildStatus.RUNNING
            announce(session, build)
            return SlotClaim.STARTED

    @activity.defn(name="finish_build")
    def finish_build(self, outcome: BuildOutcome) -> list[int]:
        """Record the final status once (a repeated call is a no-op). Returns the builds of the
        project that may now take the freed slot, oldest first."""
        with self._sessions.begin() as session:
            build = _locked(session, outcome.build_id)
            if build is None:
                return []
            if not BuildStatus(build.status).is_final:
                build.status = outcome.status
                build.exit_code = outcome.exit_code
                build.finished_at = utcnow()
                if outcome.reason:
                    append_log(session, build.id, f"\n[kiln] {outcome.reason}\n".encode())
                announce(session, build)
            project = session.get(Project, build.project_id)
            limit = project.max_concurrent_builds if project else 1
            waiting = session.scalars(
                select(Build.id)
                .where(Build.project_id == build.project_id, Build.status == BuildStatus.QUEUED)
                .order_by(Build.id)
                .limit(limit)
            )
            return list(waiting)
