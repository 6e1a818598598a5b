"""The voluntary scheme: enrolments with consent and withdrawal, removal tasks, and the tag
pool's state history (tag_states).

Revision ID: 0006_consent_pool
Revises: 0005_pairings
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_consent_pool"
down_revision = "0005_pairings"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "enrolments",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("scheme", sa.String(100), nullable=False),
        sa.Column("consent_at", sa.BigInteger(), nullable=False),
        sa.Column("sharing", sa.String(64), nullable=False),
        sa.Column("witnessed_by", sa.String(100), nullable=False),
        sa.Column("document_ref", sa.String(100), nullable=False),
        sa.Column("review_at", sa.BigInteger(), nullable=False),
        sa.Column("withdrawn_at", sa.BigInteger(), nullable=True),
        sa.Column("withdrawal_note", sa.Text(), nullable=True),
        sa.Column("exited_at", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolments")),
    )
    op.create_index(op.f("ix_enrolments_subject_id"), "enrolments", ["subject_id"])
    op.create_table(
        "removal_tasks",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("enrolment_id", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", sa.Double(), nullable=False),
        sa.Column("opened_by", sa.BigInteger(), nullable=True),
        sa.Column("done_at", sa.Double(), nullable=True),
        sa.Column("done_by", sa.BigInteger(), nullable=True),
        sa.Column("removed_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"]),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolments.id"]),
        sa.ForeignKeyConstraint(["opened_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["done_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_tasks")),
    )
    op.create_index(op.f("ix_removal_tasks_subject_id"), "removal_tasks", ["subject_id"])
    op.create_index(op.f("ix_removal_tasks_done_at"), "removal_tasks", ["done_at"])
    op.create_table(
        "tag_states",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("assignment_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["device"], ["devices.id"]),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_states")),
    )
    op.create_index(op.f("ix_tag_states_device_id"), "tag_states", ["device", "id"])
    op.create_index(op.f("ix_tag_states_unit_id"), "tag_states", ["unit_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tag_states_unit_id"), table_name="tag_states")
    op.drop_index(op.f("ix_tag_states_device_id"), table_name="tag_states")
    op.drop_table("tag_states")
    op.drop_index(op.f("ix_removal_tasks_done_at"), table_name="removal_tasks")
    op.drop_index(op.f("ix_removal_tasks_subject_id"), table_name="removal_tasks")
    op.drop_table("removal_tasks")
    op.drop_index(op.f("ix_enrolments_subject_id"), table_name="enrolments")
    op.drop_table("enrolments")
