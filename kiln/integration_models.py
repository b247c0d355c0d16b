"""What the integrations store (migration 0009): a project's notification hooks (their
secrets sealed by kiln.crypto), and per build and target the sequence number of the newest
notice handed over, so an older notice retried late is dropped instead of sent after a newer
one. The sealed GitHub token is a column of `projects` (`Project.github_token`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kiln.models import Base, UTCDateTime, utcnow


class ProjectHook(Base):
    """A URL Kiln POSTs a signed JSON notice to on the events it was chosen for."""

    __tablename__ = "project_hooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    # Event names (kiln.hooks.HOOK_EVENTS), as a JSON list.
    events: Mapped[list[str]] = mapped_column(JSON)
    # Fernet token of the signing secret, bound to the hook (kiln.hooks).
    sealed_secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationMark(Base):
    """The newest notice (by sequence) claimed for one build and one target."""

    __tablename__ = "notification_marks"

    build_id: Mapped[int] = mapped_column(
        ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True
    )
    # `github`, or `hook:<id>`.
    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
