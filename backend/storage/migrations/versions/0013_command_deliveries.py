"""Commands a device must acknowledge, sent again until it does (command_deliveries).

Revision ID: 0013_command_deliveries
Revises: 0012_victim_devices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_command_deliveries"
down_revision = "0012_victim_devices"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "command_deliveries",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("sends", sa.SmallInteger(), nullable=False),
        sa.Column("first_at", sa.Double(), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("settled_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_deliveries")),
        sa.UniqueConstraint(
            "device", "key", "value", name=op.f("uq_command_deliveries_device_key_value")
        ),
    )
    op.create_index(op.f("ix_command_deliveries_next_at"), "command_deliveries", ["next_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_command_deliveries_next_at"), table_name="command_deliveries")
    op.drop_table("command_deliveries")
