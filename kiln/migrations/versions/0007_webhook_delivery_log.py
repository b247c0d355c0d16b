"""what became of each signed webhook delivery, per project (the newest 50 kept)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_delivery_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "project_id",
            sa.Integer(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("delivery_id", sa.String(100), nullable=True),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("build_ids", sa.Text(), nullable=False),
    )
    op.create_index("ix_webhook_delivery_log_project", "webhook_delivery_log", ["project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_log_project", table_name="webhook_delivery_log")
    op.drop_table("webhook_delivery_log")
