"""TOTP enrolment in two places: users.totp_pending_enc holds a secret being enrolled, so
the confirmed one (totp_enc) stays in force until a code from the new one is confirmed.
An enrolment in progress under the old layout (totp_enc set, never confirmed) moves there.

Revision ID: 0004_totp_pending
Revises: 0003_monitoring
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_totp_pending"
down_revision = "0003_monitoring"
branch_labels = None
depends_on = None

_users = sa.table(
    "users",
    sa.column("totp_enc", sa.LargeBinary()),
    sa.column("totp_confirmed_at", sa.Double()),
    sa.column("totp_last_step", sa.BigInteger()),
    sa.column("totp_pending_enc", sa.LargeBinary()),
)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_pending_enc", sa.LargeBinary(), nullable=True))
    op.execute(
        _users.update()
        .where(_users.c.totp_enc.is_not(None), _users.c.totp_confirmed_at.is_(None))
        .values(totp_pending_enc=_users.c.totp_enc, totp_enc=None, totp_last_step=None)
    )


def downgrade() -> None:
    # The old layout holds one secret: a confirmed one wins over a replacement in progress
    # (dropping the confirmed factor would turn the second step off).
    op.execute(
        _users.update()
        .where(_users.c.totp_enc.is_(None), _users.c.totp_pending_enc.is_not(None))
        .values(totp_enc=_users.c.totp_pending_enc, totp_confirmed_at=None)
    )
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_pending_enc")
