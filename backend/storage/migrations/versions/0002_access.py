"""Access control: units, users, auth sessions (refresh tokens and revocation), subjects,
shares; audit_log gains who/which subjects/scope/purpose/request id and its hash chain
(records written before this revision are chained here, in id order).

Revision ID: 0002_access
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_access"
down_revision = "0001"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AUDIT_COLUMNS = (
    ("user_id", sa.BigInteger()),
    ("unit_id", sa.BigInteger()),
    ("subject_ids", sa.JSON()),
    ("scope", sa.String(length=16)),
    ("purpose", sa.Text()),
    ("request_id", sa.String(length=64)),
    ("prev_hash", sa.String(length=64)),
    ("hash", sa.String(length=64)),
)


def upgrade() -> None:
    op.create_table(
        "units",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
        sa.UniqueConstraint("name", name=op.f("uq_units_name")),
    )
    op.create_table(
        "subjects",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("risk_notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subjects")),
        sa.UniqueConstraint("reference", name=op.f("uq_subjects_reference")),
    )
    op.create_index(op.f("ix_subjects_unit_id"), "subjects", ["unit_id"], unique=False)
    op.create_table(
        "users",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("totp_enc", sa.LargeBinary(), nullable=True),
        sa.Column("totp_confirmed_at", sa.Double(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Double(), nullable=True),
        sa.Column("disabled_at", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("refresh_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("refreshed_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("refresh_hash", name=op.f("uq_auth_sessions_refresh_hash")),
    )
    op.create_index(op.f("ix_auth_sessions_user_id"), "auth_sessions", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_auth_sessions_previous_hash"), "auth_sessions", ["previous_hash"], unique=False
    )
    op.create_table(
        "shares",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("scopes", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"]),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
    )
    op.create_index(op.f("ix_shares_subject_id"), "shares", ["subject_id"], unique=False)
    op.create_index(
        op.f("ix_shares_unit_id_subject_id"), "shares", ["unit_id", "subject_id"], unique=False
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        for name, type_ in AUDIT_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))

    from backend.security.audit import rechain

    rechain(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        for name, _ in reversed(AUDIT_COLUMNS):
            batch_op.drop_column(name)
    op.drop_index(op.f("ix_shares_unit_id_subject_id"), table_name="shares")
    op.drop_index(op.f("ix_shares_subject_id"), table_name="shares")
    op.drop_table("shares")
    op.drop_index(op.f("ix_auth_sessions_previous_hash"), table_name="auth_sessions")
    op.drop_index(op.f("ix_auth_sessions_user_id"), table_name="auth_sessions")
    op.drop_table("auth_sessions")
    op.drop_table("users")
    op.drop_index(op.f("ix_subjects_unit_id"), table_name="subjects")
    op.drop_table("subjects")
    op.drop_table("units")
