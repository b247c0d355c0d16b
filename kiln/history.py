"""A project's build history, a page at a time (newest first), for the dashboard and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from kiln.access import owned_project
from kiln.db import SessionFactory
from kiln.models import Build, BuildStatus
from kiln.records import build_record, queue_positions

MAX_PAGE = 100


@dataclass(frozen=True)
class Page:
    builds: list[dict[str, Any]]
    # Ask with `before=next_before` for the next (older) page; None when this was the last.
    next_before: int | None


def builds_page(
    sessions: SessionFactory,
    owner_id: int,
    project_id: int,
    *,
    status: BuildStatus | None = None,
    branch: str | None = None,
    limit: int = 20,
    before: int | None = None,
) -> Page:
    """The project's builds newest first, older than `before` when given."""
    limit = max(1, min(limit, MAX_PAGE))
    with sessions() as session:
        project = owned_project(session, project_id, owner_id)
        query = select(Build).where(Build.project_id == project.id)
        if status is not None:
            query = query.where(Build.status == status)
        if branch is not None:
            query = query.where(Build.branch == branch)
        if before is not None:
            query = query.where(Build.id < before)
        # One more than asked: whether an older page exists, without a count.
        rows = list(session.scalars(query.order_by(Build.id.desc()).limit(limit + 1)))
        page, more = rows[:limit], len(rows) > limit
        positions = queue_positions(session, [project.id]) if page else {}
        return Page(
            builds=[build_record(build, positions) for build in page],
            next_before=page[-1].id if more else None,
        )
