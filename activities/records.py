"""Status writes: each change commits together with the Socket.io event that announces it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio import activity

from activities.types import BuildOutcome
from kiln.db import SessionFactory
from kiln.events import announce
from kiln.logs import append_log
from kiln.models import Build, BuildStatus, utcnow


def _locked(session: Session, build_id: int) -> Build | None:
    return session.scalar(select(Build).where(Build.id == build_id).with_for_update())


class RecordActivities:
    """Local activities (they run beside the workflow, no task-queue round trip)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="start_build")
    def start_build(self, build_id: int) -> bool:
        """queued → running. False when the build is already final (or gone): nothing to run."""
        with self._sessions.begin() as session:
            build = _locked(session, build_id)
            if build is None or BuildStatus(build.status).is_final:
                return False
            if build.status == BuildStatus.QUEUED:
                build.status = BuildStatus.RUNNING
                announce(session, build)
            return True

    @activity.defn(name="finish_build")
    def finish_build(self, outcome: BuildOutcome) -> None:
        """Record the final status once; a repeated call (activities run twice) is a no-op."""
        with self._sessions.begin() as session:
            build = _locked(session, outcome.build_id)
            if build is None or BuildStatus(build.status).is_final:
                return
            build.status = outcome.status
            build.exit_code = outcome.exit_code
            build.finished_at = utcnow()
            if outcome.reason:
                append_log(session, build.id, f"\n[kiln] {outcome.reason}\n".encode())
            announce(session, build)
