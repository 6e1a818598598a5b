"""Operator commands waiting for an ingest worker to number, sign and publish them
(command_queue: a tag's broker list, cmd_broker).

Revision ID: 0007_command_queue
Revises: 0006_consent_pool
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_command_queue"
down_revision = "0006_consent_pool"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "command_queue",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("queued_at", sa.Double(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["device"], ["devices.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_queue")),
    )
    op.create_index(op.f("ix_command_queue_device_id"), "command_queue", ["device", "id"])
    op.create_index(op.f("ix_command_queue_sent_at"), "command_queue", ["sent_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_command_queue_sent_at"), table_name="command_queue")
    op.drop_index(op.f("ix_command_queue_device_id"), table_name="command_queue")
    op.drop_table("command_queue")
