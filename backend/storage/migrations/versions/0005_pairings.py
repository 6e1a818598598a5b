"""Pairing history (pairings): which home unit spoke for a tag when. A pairing already in
devices.home_unit becomes the tag's first, in force from the start: when it was made was
not recorded.

Revision ID: 0005_pairings
Revises: 0004_totp_pending
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0005_pairings"
down_revision = "0004_totp_pending"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pairings",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("tag", sa.BigInteger(), nullable=False),
        sa.Column("home_unit", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=True),
        sa.Column("ends_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["home_unit"], ["devices.id"]),
        sa.ForeignKeyConstraint(["tag"], ["devices.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairings")),
    )
    op.create_index(op.f("ix_pairings_tag_starts_at"), "pairings", ["tag", "starts_at"])
    devices = sa.table("devices", sa.column("id", sa.BigInteger()), sa.column("home_unit"))
    pairings = sa.table(
        "pairings",
        sa.column("tag", sa.BigInteger()),
        sa.column("home_unit", sa.BigInteger()),
        sa.column("created_at", sa.Double()),
    )
    op.execute(
        pairings.insert().from_select(
            ["tag", "home_unit", "created_at"],
            sa.select(
                devices.c.id, devices.c.home_unit, sa.literal(time.time(), sa.Double())
            ).where(devices.c.home_unit.is_not(None)),
        )
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_pairings_tag_starts_at"), table_name="pairings")
    op.drop_table("pairings")
