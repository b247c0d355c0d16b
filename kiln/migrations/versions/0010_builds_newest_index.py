"""builds by project in id order: a project's newest builds are an index range, however long
its history (replaces the index on project_id alone, which it covers)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.create_index("ix_builds_project_newest", ["project_id", "id"])
        batch.drop_index("ix_builds_project_id")


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.create_index("ix_builds_project_id", ["project_id"])
        batch.drop_index("ix_builds_project_newest")
