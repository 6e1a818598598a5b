"""The durable hand-over from ingest to the rules: batches committed and not yet evaluated.

Revision ID: 0008_rules_pending
Revises: 0007_command_queue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_rules_pending"
down_revision = "0007_command_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rules_pending",
        sa.Column("token", sa.String(32), autoincrement=False, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("frames", sa.JSON(), nullable=False),
        sa.Column("refusals", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_rules_pending")),
    )
    op.create_index(op.f("ix_rules_pending_at"), "rules_pending", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_rules_pending_at"), table_name="rules_pending")
    op.drop_table("rules_pending")
