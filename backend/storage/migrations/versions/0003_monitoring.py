"""Monitoring: orders, equipment assignments, curfews and exceptions, zones, charging
schedules, alerts with their episodes and history, the rule engine's state and snapshots,
device commands; an index on frames (device, ts) for re-evaluation from stored frames.

Revision ID: 0003_monitoring
Revises: 0002_access
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_monitoring"
down_revision = "0002_access"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "device_commands",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_commands")),
        sa.UniqueConstraint("device", "seq", name=op.f("uq_device_commands_device_seq")),
    )
    op.create_table(
        "rule_snapshots",
        sa.Column("subject_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "at", name=op.f("pk_rule_snapshots")),
    )
    op.create_table(
        "rule_state",
        sa.Column("subject_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("covers", sa.BigInteger(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_rule_state")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("group_key", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=True),
        sa.Column("episodes", sa.Integer(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("raised_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("acknowledged_by", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_at", sa.Double(), nullable=True),
        sa.Column("resolved_by", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", sa.Double(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_group_key_end"), "alerts", ["group_key", "end"], unique=False)
    op.create_index(op.f("ix_alerts_raised_at"), "alerts", ["raised_at"], unique=False)
    op.create_index(
        op.f("ix_alerts_state_raised_at"), "alerts", ["state", "raised_at"], unique=False
    )
    op.create_index(
        op.f("ix_alerts_subject_id_start"), "alerts", ["subject_id", "start"], unique=False
    )
    op.create_table(
        "assignments",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device"],
            ["devices.id"],
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
    )
    op.create_index(
        op.f("ix_assignments_device_starts_at"),
        "assignments",
        ["device", "starts_at"],
        unique=False,
    )
    op.create_index(op.f("ix_assignments_subject_id"), "assignments", ["subject_id"], unique=False)
    op.create_table(
        "charging_schedules",
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("min_minutes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_charging_schedules")),
    )
    op.create_table(
        "curfew_exceptions",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curfew_exceptions")),
    )
    op.create_index(
        op.f("ix_curfew_exceptions_subject_id"), "curfew_exceptions", ["subject_id"], unique=False
    )
    op.create_table(
        "curfews",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("days", sa.String(length=32), nullable=False),
        sa.Column("start", sa.String(length=5), nullable=False),
        sa.Column("end", sa.String(length=5), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curfews")),
    )
    op.create_index(op.f("ix_curfews_subject_id"), "curfews", ["subject_id"], unique=False)
    op.create_table(
        "orders",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=True),
        sa.Column("comms_loss_s", sa.Integer(), nullable=True),
        sa.Column("curfew_grace_s", sa.Integer(), nullable=True),
        sa.Column("conditions", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_subject_id"), "orders", ["subject_id"], unique=False)
    op.create_table(
        "subject_monitoring",
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_subject_monitoring")),
    )
    op.create_table(
        "zones",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("shape", sa.String(length=16), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("radius_m", sa.Double(), nullable=False),
        sa.Column("width_m", sa.Double(), nullable=False),
        sa.Column("buffer_m", sa.Double(), nullable=False),
        sa.Column("victim", sa.Boolean(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("dwell_s", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
    )
    op.create_index(op.f("ix_zones_subject_id"), "zones", ["subject_id"], unique=False)
    op.create_table(
        "alert_actions",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_actions")),
    )
    op.create_index(op.f("ix_alert_actions_alert_id"), "alert_actions", ["alert_id"], unique=False)
    op.create_table(
        "alert_episodes",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("subkey", sa.String(length=100), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=True),
        sa.Column("confirmed_t", sa.BigInteger(), nullable=False),
        sa.Column("closed_t", sa.BigInteger(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("raised_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("cleared_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_episodes")),
        sa.UniqueConstraint("key", name=op.f("uq_alert_episodes_key")),
    )
    op.create_index(
        op.f("ix_alert_episodes_alert_id"), "alert_episodes", ["alert_id"], unique=False
    )
    op.create_index(
        op.f("ix_alert_episodes_subject_id_closed_t"),
        "alert_episodes",
        ["subject_id", "closed_t"],
        unique=False,
    )
    op.create_index("ix_frames_device_ts", "frames", ["device", "ts"], unique=False)
    op.create_index(
        "ix_frames_home_received",
        "frames",
        ["device", "received_at"],
        unique=False,
        sqlite_where=sa.text("mtype = 2"),
        postgresql_where=sa.text("mtype = 2"),
    )


def downgrade() -> None:
    op.drop_index("ix_frames_home_received", table_name="frames")
    op.drop_index("ix_frames_device_ts", table_name="frames")
    op.drop_index(op.f("ix_alert_episodes_subject_id_closed_t"), table_name="alert_episodes")
    op.drop_index(op.f("ix_alert_episodes_alert_id"), table_name="alert_episodes")
    op.drop_table("alert_episodes")
    op.drop_index(op.f("ix_alert_actions_alert_id"), table_name="alert_actions")
    op.drop_table("alert_actions")
    op.drop_index(op.f("ix_zones_subject_id"), table_name="zones")
    op.drop_table("zones")
    op.drop_table("subject_monitoring")
    op.drop_index(op.f("ix_orders_subject_id"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_curfews_subject_id"), table_name="curfews")
    op.drop_table("curfews")
    op.drop_index(op.f("ix_curfew_exceptions_subject_id"), table_name="curfew_exceptions")
    op.drop_table("curfew_exceptions")
    op.drop_table("charging_schedules")
    op.drop_index(op.f("ix_assignments_subject_id"), table_name="assignments")
    op.drop_index(op.f("ix_assignments_device_starts_at"), table_name="assignments")
    op.drop_table("assignments")
    op.drop_index(op.f("ix_alerts_subject_id_start"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_state_raised_at"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_raised_at"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_group_key_end"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("rule_state")
    op.drop_table("rule_snapshots")
    op.drop_table("device_commands")
