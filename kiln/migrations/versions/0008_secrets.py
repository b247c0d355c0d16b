"""project secrets, project variables (env) and git credentials

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("env", sa.JSON(), nullable=False, server_default="{}"))
        # Sealed (Fernet) JSON {username, token}; NULL: the repository needs none.
        batch.add_column(sa.Column("git_credentials", sa.Text(), nullable=True))
    op.create_table(
        "project_secrets",
        sa.Column(
            "project_id",
            sa.Integer(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("project_secrets")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("git_credentials")
        batch.drop_column("env")
