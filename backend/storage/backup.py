"""Backup and restore of the backend's database (docs/operations.md, "Backup and restore").

- SQLite: the online backup API (`sqlite3.Connection.backup`) copies a consistent snapshot
  of a database in use, WAL included, while ingest goes on writing. A restore copies the
  backup into the live file through the same API, so the result is a whole database, never
  a file swapped under an open WAL.
- PostgreSQL: `pg_dump` in its custom format, inside a snapshot this module exports, so the
  summary it reports (schema revision, audit chain head) describes exactly what was dumped.
  A restore is `pg_restore --clean --if-exists --single-transaction` (all or nothing), then
  the tables the backup does not hold (a later migration's) are dropped: the database is
  the backed-up one, not a mix.
- A backup whose audit chain does not verify is refused before anything is touched; after
  a restore the chain is verified again over the restored database, and the restore itself
  is appended to it (who can tell otherwise that the log was rewound?).
- Files are created readable by their owner only: they hold every location and the
  encrypted device keys. The server key is not in them; back it up apart (operations.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from glob import glob
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from backend.security import audit
from backend.storage.database import make_engine

SQLITE_SUFFIX = ".sqlite"
PG_SUFFIX = ".pgdump"
_NAME = re.compile(r"^tagwatch-(\d{8}T\d{6}Z)\.(sqlite|pgdump)$")
_STAMP = "%Y%m%dT%H%M%SZ"


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Summary:
    """What a backup holds (or a restored database now holds)."""

    engine: str
    file: str
    revision: str | None
    audit_records: int
    audit_head: str
    sha256: str
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup_name(now: datetime, sqlite_db: bool) -> str:
    return f"tagwatch-{now.strftime(_STAMP)}{SQLITE_SUFFIX if sqlite_db else PG_SUFFIX}"


def backup(url: str, out: Path, now: datetime | None = None) -> Summary:
    """Back up the database at `url` to `out` (a folder: a timestamped file in it)."""
    db = make_url(url)
    is_sqlite = db.get_backend_name() == "sqlite"
    if out.is_dir():
        out = out / backup_name(now or datetime.now(UTC), is_sqlite)
    partial = _private_file(out.with_name(out.name + ".partial"))
    try:
        if is_sqlite:
            _sqlite_copy(_sqlite_path(db), partial)
            state = _state(_sqlite_file(partial))
        else:
            state = _pg_dump(url, partial)
        _check_chain(state[1], "the database being backed up")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return _summary(db, out, state)


def restore(url: str, source: Path, actor: str, at: float) -> Summary:
    """Replace the database at `url` with the backup `source`; verify the audit chain;
    record the restore in it. Stop every service using the database first."""
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    db = make_url(url)
    if db.get_backend_name() == "sqlite":
        if source.read_bytes()[:16] != b"SQLite format 3\x00":
            raise BackupError(f"{source} is not an SQLite backup")
        check = _sqlite_file(source)
        with check.connect() as conn:
            ok = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
        if ok != "ok":
            raise BackupError(f"{source} fails SQLite's integrity check: {ok}")
        _check_chain(_state(check)[1], f"the backup {source}")
        _sqlite_copy(source, _sqlite_path(db))
    else:
        _pg_restore(url, source)
    engine = make_engine(url)
    try:
        revision, chain = _state(engine)
        _check_chain(chain, "the restored database")
        digest = _sha256(source)
        audit.append_now(
            engine,
            audit.Entry(
                actor=actor,
                action="backup.restore",
                detail={
                    "file": source.name,
                    "sha256": digest,
                    "revision": revision,
                    "audit_head": chain.head,
                },
            ),
            at,
        )
        return _summary(db, source, _state(engine))
    finally:
        engine.dispose()


def prune(folder: Path, keep_days: int, now: datetime) -> list[Path]:
    """Delete the backups in `folder` (by their names' timestamps) older than keep_days,
    never the newest one. Returns what was deleted."""
    found = sorted(
        (datetime.strptime(m.group(1), _STAMP).replace(tzinfo=UTC), p)
        for p in folder.iterdir()
        if (m := _NAME.match(p.name))
    )
    cutoff = now.timestamp() - keep_days * 86400
    gone = [p for t, p in found[:-1] if t.timestamp() < cutoff]
    for p in gone:
        p.unlink()
    return gone


# ---- SQLite ----------------------------------------------------------------------------


def _sqlite_path(db: URL) -> Path:
    if not db.database or db.database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return Path(db.database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy a whole database through SQLite's online backup API. The copy is then given a
    rollback journal, so a backup file is one self-contained file (no -wal beside it); the
    live database returns to WAL when the backend next connects (database.make_engine)."""
    if not source.is_file():
        raise BackupError(f"no database file {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as e:
        raise BackupError(f"SQLite could not copy {source} to {target}: {e}") from e
    finally:
        dst.close()
        src.close()


def _sqlite_file(path: Path) -> Engine:
    """A plain engine on a backup file (make_engine would turn it to WAL mode), with one
    connection, closed after each use."""
    return create_engine(f"sqlite:///{path}", poolclass=NullPool)


# ---- PostgreSQL ------------------------------------------------------------------------


def pg_tool(name: str) -> str:
    """A PostgreSQL client program: on PATH (Debian's pg_wrapper picks the version), else
    the newest server installation's."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3])
    )
    if not versions:
        raise BackupError(f"{name} not found: `apt-get install postgresql-client`")
    return versions[-1]


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for the SQLAlchemy URL, and the environment carrying its
    password (never on a command line, where `ps` would show it)."""
    db = make_url(url)
    env = dict(os.environ)
    if db.password is not None:
        env["PGPASSWORD"] = str(db.password)
    plain = db.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _pg_dump(url: str, out: Path) -> tuple[str | None, audit.Verification]:
    engine = make_engine(url)
    uri, env = _libpq(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                # pg_dump reads the snapshot this transaction holds: what is verified here
                # is what is dumped, whatever ingest writes meanwhile.
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                state = _read_state(conn)
                _run(
                    [pg_tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}",
                     f"--file={out}", f"--dbname={uri}"],
                    env,
                )  # fmt: skip
        return state
    finally:
        engine.dispose()


def _pg_restore(url: str, source: Path) -> None:
    uri, env = _libpq(url)
    listing = _run([pg_tool("pg_restore"), "--list", str(source)], env)
    tables = set(re.findall(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ", listing, re.MULTILINE))
    if "audit_log" not in tables:
        raise BackupError(f"{source} is not a tagwatch backup (no audit_log table)")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            others = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        if others:
            raise BackupError(
                f"{others} other connection(s) to the database: stop the API, the ingest "
                "workers and the timers first"
            )
        _run(
            [pg_tool("pg_restore"), "--clean", "--if-exists", "--single-transaction",
             "--exit-on-error", "--no-owner", "--no-privileges", f"--dbname={uri}", str(source)],
            env,
        )  # fmt: skip
        with engine.begin() as conn:
            for name in sorted(set(inspect(conn).get_table_names()) - tables):
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


def _run(argv: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=6 * 3600)
    if proc.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


# ---- both ------------------------------------------------------------------------------


def _read_state(conn: Connection) -> tuple[str | None, audit.Verification]:
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(conn).get_current_revision()
    return revision, audit.verify(conn)


def _state(engine: Engine) -> tuple[str | None, audit.Verification]:
    with engine.connect() as conn, conn.begin():
        return _read_state(conn)


def _check_chain(chain: audit.Verification, what: str) -> None:
    if not chain.ok:
        raise BackupError(
            f"the audit chain of {what} is broken at record {chain.first_bad_id}: {chain.reason}"
        )


def _private_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _summary(db: URL, path: Path, state: tuple[str | None, audit.Verification]) -> Summary:
    revision, chain = state
    return Summary(
        engine=db.get_backend_name(),
        file=str(path),
        revision=revision,
        audit_records=chain.checked,
        audit_head=chain.head,
        sha256=_sha256(path),
        bytes=path.stat().st_size,
    )
