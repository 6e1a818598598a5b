"""Engines for both supported databases, and migration to the current schema.

SQLite runs in WAL mode so readers never block the ingest writer; a writer transaction
starts with BEGIN IMMEDIATE (execution option `sqlite_immediate`) so two ingest processes
queue for the write lock instead of failing with "database is locked" on upgrade."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from backend.services.errors import Invalid

MIGRATIONS = Path(__file__).parent / "migrations"
IMMEDIATE = {"sqlite_immediate": True}
# For the API's requests that may change something: on PostgreSQL their transactions run
# one at a time (`_serialize_changes`), as every transaction begun IMMEDIATE does on SQLite.
SERIAL_CHANGES = {"serial_changes": True}
# Arbitrary, fixed: the advisory lock that does it; the audit log's appends have their own
# (backend/security/audit.py).
_PG_CHANGES_LOCK = 0x7461_6778
CONNECT_TIMEOUT_S = 10


@dataclass
class Retry:
    """The back-off for work that failed because a server went away: the database (a
    PostgreSQL primary lost, Patroni promoting its replica) or a broker. Doubling from
    first_s to max_s; success resets it. Each connection (a worker's database work, each of
    its brokers) keeps one, and every retry loop asks it how long to wait."""

    first_s: float = 0.2
    max_s: float = 5.0
    attempt: int = 0

    def failed(self) -> float:
        """Seconds to wait before the next attempt."""
        delay: float = min(self.max_s, self.first_s * 2.0 ** min(self.attempt, 16))
        self.attempt += 1
        return delay

    def succeeded(self) -> None:
        self.attempt = 0


class DatabaseUrlError(ValueError):
    """A database URL tagwatch cannot use, said as a sentence for the operator."""


SUPPORTED = ("sqlite", "postgresql")
NUL_REFUSED = "text may not contain the NUL character (U+0000)"


_NESTED = (list, tuple, dict)


def _has_nul(parameters: Any) -> bool:
    """Whether any text among a statement's parameters (a row, rows of an executemany, named
    or positional, arrays within them) holds U+0000. The rows' values are gathered into one
    list and their texts joined, so that an ingest batch of a thousand rows costs ~1 ms."""
    if isinstance(parameters, str):
        return "\x00" in parameters
    if isinstance(parameters, dict):
        parameters = list(parameters.values())
    elif not isinstance(parameters, (list, tuple)):
        return False
    kinds = set(map(type, parameters))
    if kinds and kinds <= {dict}:
        values = [v for row in parameters for v in row.values()]
    elif kinds and kinds <= {list, tuple}:
        values = [v for row in parameters for v in row]
    else:
        values = list(parameters)
    kinds = set(map(type, values))
    texts = (
        [v for v in values if isinstance(v, str)] if any(issubclass(k, str) for k in kinds) else []
    )
    if "\x00" in "".join(texts):
        return True
    return any(issubclass(k, _NESTED) for k in kinds) and any(
        _has_nul(v) for v in values if isinstance(v, _NESTED)
    )


def _refuse_nul(
    _conn: Connection,
    _cursor: Any,
    _statement: str,
    parameters: Any,
    _context: Any,
    _executemany: bool,
) -> None:
    # PostgreSQL cannot store U+0000 in text and answers a DataError; SQLite stores it. Every
    # statement passes here, so neither engine takes one from any caller (an API field, a
    # query, a login form) and the caller gets a sentence, not a 500. JSON values pass: the
    # driver writes the character escaped, which both engines' JSON columns keep. The
    # parameters' shape varies (a row, rows, one row of an insert-many batch flagged
    # executemany): every value is looked at.
    if _has_nul(parameters):
        raise Invalid(NUL_REFUSED)


def _serialize_changes(conn: Connection) -> None:
    # A transaction begun with SERIAL_CHANGES waits for the one before it to end, as SQLite's
    # BEGIN IMMEDIATE makes every writer wait: a route that reads, then writes what it read
    # (a reference not taken yet, an alert still open, room under a per-subject bound) sees
    # what the one before it committed. Under PostgreSQL's read committed each read its own
    # snapshot and both wrote: eight requests at once made duplicates that answered 500,
    # acknowledged one alert up to three times, stored up to 27 orders under a bound of 20.
    if conn.get_execution_options().get("serial_changes", False):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_CHANGES_LOCK})")


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise DatabaseUrlError(
            "not a database URL (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)"
        ) from e
    if parsed.get_backend_name() not in SUPPORTED:
        raise DatabaseUrlError(
            f"tagwatch runs on SQLite or PostgreSQL, not {parsed.get_backend_name()}"
        )
    if parsed.get_backend_name() != "sqlite":
        if "connect_timeout" not in parsed.query:
            # Bounded, so that a readiness check or a scrape answers while the database
            # host is unreachable instead of waiting for the operating system's timeout.
            kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_S})
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
        event.listen(engine, "before_cursor_execute", _refuse_nul)
        event.listen(engine, "begin", _serialize_changes)
        return engine
    if parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseUrlError(f"cannot create the database's folder {folder}: {e}") from e
    engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
    event.listen(engine, "before_cursor_execute", _refuse_nul)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours (below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against a process crash (what a killed worker is);
        # a power cut may lose the last transactions, which devices then retransmit
        # because they were never acknowledged... only if the ack had not gone out yet.
        # docs/operations.md discusses FULL for deployments that want power-cut safety.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to the current schema (idempotent)."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


@cache
def head_revision() -> str | None:
    """The newest migration this code knows (what `upgrade` brings a database to)."""
    head: str | None = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev
