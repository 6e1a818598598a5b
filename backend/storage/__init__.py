"""Durable storage: one SQLAlchemy schema for SQLite (embedded default) and PostgreSQL."""
