"""Outcomes can be corrected and withdrawn (backend/services/outcomes.py): who corrected one
last and when, and who withdrew one, when and why. A withdrawn outcome stays (the audit log
and earlier extracts refer to it) but no longer counts.

Revision ID: 0011_outcome_corrections
Revises: 0010_outcomes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_outcome_corrections"
down_revision = "0010_outcomes"
branch_labels = None
depends_on = None

USERS = ("corrected_by", "withdrawn_by")


def upgrade() -> None:
    with op.batch_alter_table("outcomes") as batch:
        batch.add_column(sa.Column("corrected_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("corrected_by", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("withdrawn_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("withdrawn_by", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("withdrawal_reason", sa.String(500), nullable=True))
        for column in USERS:
            batch.create_foreign_key(f"fk_outcomes_{column}_users", "users", [column], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("outcomes") as batch:
        for column in USERS:
            batch.drop_constraint(f"fk_outcomes_{column}_users", type_="foreignkey")
        for column in ("withdrawal_reason", "withdrawn_by", "withdrawn_at", "corrected_by",
                       "corrected_at"):  # fmt: skip
            batch.drop_column(column)
