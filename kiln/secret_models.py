"""What kiln.secrets stores: project secrets (names in clear, values sealed by kiln.crypto) in
their own table, and two columns of `projects` (migration 0008): `env`, the project's
non-secret build variables (a JSON object), and `git_credentials`, its sealed git credentials
(or NULL). Only `kiln.secrets` seals or opens a value.

kiln.secrets reads and writes those two columns through `PROJECT_SECRETS` (a plain table
clause), so it does not depend on how the `Project` model maps them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, column, table
from sqlalchemy.orm import Mapped, mapped_column

from kiln.models import Base, UTCDateTime, utcnow


class ProjectSecret(Base):
    """One secret of a project, given to its builds as an environment variable."""

    __tablename__ = "project_secrets"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Fernet token of the value, bound to the project and the name (kiln.crypto.SecretBox).
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The columns of `projects` kiln.secrets works with.
PROJECT_SECRETS = table(
    "projects",
    column("id", Integer),
    column("env", JSON),
    column("git_credentials", Text),
)
