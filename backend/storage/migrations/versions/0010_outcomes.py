"""Outcomes: what became of a subject's episode of monitoring, recorded by officers for
evaluation (backend/services/outcomes.py).

Revision ID: 0010_outcomes
Revises: 0009_notifications
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_outcomes"
down_revision = "0009_notifications"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("occurred_on", sa.String(10), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"]),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
    )
    op.create_index(op.f("ix_outcomes_subject_id"), "outcomes", ["subject_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outcomes_subject_id"), table_name="outcomes")
    op.drop_table("outcomes")
