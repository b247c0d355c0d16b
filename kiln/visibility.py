"""What operators see of a build outside Kiln (Temporal's UI): its labels, and how many builds of
its project are ahead of it while it waits. Reads only; the Temporal side (search attributes,
summaries) is `workflows.visibility`."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from kiln.contracts import COMMAND_HEAD_BYTES, BuildLabels
from kiln.db import SessionFactory, reads_only
from kiln.models import Build, BuildStatus, Project


def head(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


class BuildVisibility:
    """Reads for the workflow facade (labels at start) and the claim activity (the count); on
    SQLite they take no write lock (`reads_only`), so a start never waits behind a worker
    appending output."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def labels(self, build_id: int) -> BuildLabels | None:
        """The build's labels, or None when it no longer exists. One query."""
        with reads_only(), self._sessions() as session:
            row = session.execute(
                select(Build.project_id, Project.name, Build.branch, Build.commit_hash)
                .add_columns(Build.commit, Build.commit_author, Project.build_command)
                .join(Project, Build.project_id == Project.id)
                .where(Build.id == build_id)
            ).one_or_none()
        if row is None:
            return None
        project_id, name, branch, commit_hash, message, author, command = row
        return BuildLabels(
            project_id=project_id,
            project=name,
            branch=branch,
            commit_hash=commit_hash,
            commit_message=message,
            commit_author=author,
            command=head(command, COMMAND_HEAD_BYTES),
        )

    def builds_ahead(self, build_id: int) -> int:
        """How many builds of its project hold a slot or wait before this one (0 when it is
        gone)."""
        project_id = select(Build.project_id).where(Build.id == build_id).scalar_subquery()
        query = select(func.count()).where(
            Build.project_id == project_id,
            or_(
                Build.status == BuildStatus.RUNNING,
                (Build.status == BuildStatus.QUEUED) & (Build.id < build_id),
            ),
        )
        with reads_only(), self._sessions() as session:
            return int(session.scalar(query) or 0)
