"""Victim devices: a victim's own device linked to an order (victim_devices).

Revision ID: 0012_victim_devices
Revises: 0011_outcome_corrections
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_victim_devices"
down_revision = "0011_outcome_corrections"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "victim_devices",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("warn_m", sa.Integer(), nullable=False),
        sa.Column("alert_m", sa.Integer(), nullable=False),
        sa.Column("silent_s", sa.Integer(), nullable=True),
        sa.Column("victim_safe", sa.Boolean(), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["device"], ["devices.id"]),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_victim_devices")),
    )
    op.create_index(op.f("ix_victim_devices_device"), "victim_devices", ["device"])
    op.create_index(op.f("ix_victim_devices_order_id"), "victim_devices", ["order_id"])
    op.create_index(op.f("ix_victim_devices_subject_id"), "victim_devices", ["subject_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_victim_devices_subject_id"), table_name="victim_devices")
    op.drop_index(op.f("ix_victim_devices_order_id"), table_name="victim_devices")
    op.drop_index(op.f("ix_victim_devices_device"), table_name="victim_devices")
    op.drop_table("victim_devices")
