"""webhook secrets and repo keys, build timeouts, per-project concurrency, deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A copy of kiln.git.repo_key as of this revision: migrations must not change when the app does.
def _repo_key(url: str) -> str:
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port  # raises ValueError when not a valid port
    if port:
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    path = path.removesuffix(".git").rstrip("/")
    return f"{parts.scheme.lower()}://{host}{path}"


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("webhook_secret", sa.String(100), nullable=True))
        batch.add_column(sa.Column("repo_key", sa.String(2000), nullable=False, server_default=""))
        batch.create_index("ix_projects_repo_key", ["repo_key"])
        batch.add_column(
            sa.Column("timeout_seconds", sa.Integer(), nullable=False, server_default="3600")
        )
        batch.add_column(
            sa.Column("max_concurrent_builds", sa.Integer(), nullable=False, server_default="1")
        )
    # Existing projects each get a secret of their own.
    projects = sa.table(
        "projects",
        sa.column("id", sa.Integer),
        sa.column("repo_url"),
        sa.column("repo_key"),
        sa.column("webhook_secret"),
    )
    connection = op.get_bind()
    for project_id, repo_url in connection.execute(sa.select(projects.c.id, projects.c.repo_url)):
        connection.execute(
            projects.update()
            .where(projects.c.id == project_id)
            .values(webhook_secret=secrets.token_hex(32), repo_key=_repo_key(repo_url))
        )
    with op.batch_alter_table("projects") as batch:
        batch.alter_column("webhook_secret", existing_type=sa.String(100), nullable=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.String(100), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("builds") as batch:
        batch.create_index("ix_builds_project_status", ["project_id", "status"])


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_index("ix_builds_project_status")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("projects") as batch:
        batch.drop_index("ix_projects_repo_key")
        batch.drop_column("repo_key")
        batch.drop_column("max_concurrent_builds")
        batch.drop_column("timeout_seconds")
        batch.drop_column("webhook_secret")
