"""A command delivery given up names the alert that told the officer (command_deliveries.
alert_id): a late answer from the device is noted on that alert, and retention keeps the
delivery's records while that alert is being worked (backend/device_commands.py,
backend/storage/retention.py).

Revision ID: 0014_delivery_alerts
Revises: 0013_command_deliveries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_delivery_alerts"
down_revision = "0013_command_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("command_deliveries") as batch:
        batch.add_column(sa.Column("alert_id", sa.BigInteger(), nullable=True))
    # Deliveries given up before this revision: their alert's episode names the delivery in
    # its sub-key (backend/rules/delivery.py), "<device>@<key>/<value>".
    conn = op.get_bind()
    d = sa.table(
        "command_deliveries",
        sa.column("id", sa.BigInteger()),
        sa.column("device", sa.BigInteger()),
        sa.column("key", sa.SmallInteger()),
        sa.column("value", sa.BigInteger()),
        sa.column("outcome", sa.String()),
        sa.column("alert_id", sa.BigInteger()),
    )
    e = sa.table(
        "alert_episodes",
        sa.column("alert_id", sa.BigInteger()),
        sa.column("rule", sa.String()),
        sa.column("subkey", sa.String()),
    )
    found = {
        r.subkey: r.alert_id
        for r in conn.execute(sa.select(e.c.subkey, e.c.alert_id).where(e.c.rule == "delivery"))
    }
    rows = conn.execute(
        sa.select(d.c.id, d.c.device, d.c.key, d.c.value).where(d.c.outcome == "unreached")
    ).all()
    for r in rows:
        alert = found.get(f"{r.device}@{r.key}/{r.value}")
        if alert is not None:
            conn.execute(sa.update(d).where(d.c.id == r.id).values(alert_id=alert))


def downgrade() -> None:
    with op.batch_alter_table("command_deliveries") as batch:
        batch.drop_column("alert_id")
