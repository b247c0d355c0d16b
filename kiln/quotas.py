"""Per-user limits: how many projects, queued builds and running builds one account may have.

Each check runs in the transaction that adds what it counts, after `lock_owner` (the owner's
user row, locked on PostgreSQL; SQLite's transactions are serial already), so two requests of
one user at the same moment cannot both slip under a limit. Lock order: the user row before
any project row, everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kiln.errors import RequestError
from kiln.models import Build, BuildStatus, Project, User
from kiln.settings import Settings


class LimitReached(RequestError):
    """A per-user limit or throttle was hit (the API's 429); `retry_after` in seconds, when
    known."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class UserLimits:
    max_projects: int
    max_queued_builds: int
    max_running_builds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UserLimits:
        return cls(
            max_projects=settings.max_projects_per_user,
            max_queued_builds=settings.max_queued_builds_per_user,
            max_running_builds=settings.max_running_builds_per_user,
        )


def lock_owner(session: Session, owner_id: int) -> None:
    """Serialise the quota checks of one user until the transaction ends."""
    session.execute(select(User.id).where(User.id == owner_id).with_for_update())


def owned_builds(session: Session, owner_id: int, status: BuildStatus) -> int:
    """How many of the user's builds have `status`."""
    query = (
        select(func.count())
        .select_from(Build)
        .join(Project, Build.project_id == Project.id)
        .where(Project.owner_id == owner_id, Build.status == status)
    )
    return int(session.scalar(query) or 0)


def check_new_project(session: Session, owner_id: int, limits: UserLimits) -> None:
    """Refuse one project more than the limit (call after `lock_owner`)."""
    query = select(func.count()).select_from(Project).where(Project.owner_id == owner_id)
    if int(session.scalar(query) or 0) >= limits.max_projects:
        raise LimitReached(
            f"Project limit reached: an account may have at most {limits.max_projects} "
            "projects; delete one first"
        )


def queued_builds_left(session: Session, owner_id: int, limits: UserLimits) -> int:
    """How many more builds the user may queue now (after `lock_owner`)."""
    return max(0, limits.max_queued_builds - owned_builds(session, owner_id, BuildStatus.QUEUED))


def queued_limit_reached(limits: UserLimits) -> LimitReached:
    return LimitReached(
        f"Queued build limit reached: an account may have at most "
        f"{limits.max_queued_builds} builds waiting; wait for some to start or cancel them"
    )


def check_new_builds(session: Session, owner_id: int, limits: UserLimits, count: int) -> None:
    """Refuse `count` more queued builds when they would pass the limit (after `lock_owner`)."""
    if count > queued_builds_left(session, owner_id, limits):
        raise queued_limit_reached(limits)


def may_run_another(session: Session, owner_id: int, limits: UserLimits) -> bool:
    """Whether the user runs fewer builds than the limit (after `lock_owner`)."""
    return owned_builds(session, owner_id, BuildStatus.RUNNING) < limits.max_running_builds
