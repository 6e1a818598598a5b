"""Notifications: on-call shifts, notification policies, Web Push subscriptions, pages and
the dispatcher's outbox (backend/notify).

Revision ID: 0009_notifications
Revises: 0008_rules_pending
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_notifications"
down_revision = "0008_rules_pending"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "oncall_shifts",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("channels", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oncall_shifts")),
    )
    op.create_index(
        op.f("ix_oncall_shifts_unit_id_ends_at"), "oncall_shifts", ["unit_id", "ends_at"]
    )
    op.create_table(
        "notification_policies",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("alert_type", sa.String(48), nullable=False),
        sa.Column("min_severity", sa.String(16), nullable=False),
        sa.Column("escalate_after_s", sa.Integer(), nullable=False),
        sa.Column("dedup_s", sa.Integer(), nullable=False),
        sa.Column("quiet_start", sa.String(5), nullable=True),
        sa.Column("quiet_end", sa.String(5), nullable=True),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("webhook_url", sa.String(500), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_policies")),
        sa.UniqueConstraint(
            "unit_id", "alert_type", name=op.f("uq_notification_policies_unit_id_alert_type")
        ),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("endpoint", sa.String(1000), nullable=False),
        sa.Column("p256dh", sa.String(128), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    op.create_index(op.f("ix_push_subscriptions_user_id"), "push_subscriptions", ["user_id"])
    op.create_table(
        "notification_pages",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("policy_id", sa.BigInteger(), nullable=False),
        sa.Column("group_key", sa.String(128), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("paged_at", sa.Double(), nullable=False),
        sa.Column("token_expires_at", sa.Double(), nullable=False),
        sa.Column("token_used_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.ForeignKeyConstraint(["policy_id"], ["notification_policies.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_pages")),
    )
    op.create_index(op.f("ix_notification_pages_alert_id"), "notification_pages", ["alert_id"])
    op.create_index(
        op.f("ix_notification_pages_group_key_paged_at"),
        "notification_pages",
        ["group_key", "paged_at"],
    )
    op.create_table(
        "notification_outbox",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("page_id", sa.BigInteger(), nullable=True),
        sa.Column("target", sa.String(1000), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("done_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.ForeignKeyConstraint(["page_id"], ["notification_pages.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
    )
    op.create_index(
        op.f("ix_notification_outbox_state_due_at"), "notification_outbox", ["state", "due_at"]
    )
    op.create_index(op.f("ix_notification_outbox_page_id"), "notification_outbox", ["page_id"])


def downgrade() -> None:
    op.drop_table("notification_outbox")
    op.drop_table("notification_pages")
    op.drop_table("push_subscriptions")
    op.drop_table("notification_policies")
    op.drop_index(op.f("ix_oncall_shifts_unit_id_ends_at"), table_name="oncall_shifts")
    op.drop_table("oncall_shifts")
