"""Alembic environment: migrations always run on a connection handed in by
backend.storage.database.upgrade (no alembic.ini, no URL in the repository)."""

from __future__ import annotations

from alembic import context

from backend.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through backend.storage.database.upgrade()")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
