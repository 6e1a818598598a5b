"""Restore drills on SQLite and PostgreSQL, through the real commands: data written by the
real pipeline (frames, positions, rules, alerts, audit), `tagwatch backend backup` while in
use, more written, `tagwatch backend restore`: every table is exactly as backed up (ids and
sequences included), plus one audit record of the restore, and the chain verifies."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, insert, select, text

from backend.clock import ManualClock
from backend.registry import KeyVault, Registry
from backend.security import audit
from backend.storage.backup import BackupError, backup, backup_name, prune, restore
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import audit_log, frames
from firmware import frame as fr
from tests.backend.conftest import PostgresServer
from tests.backend.deploy.services import SERVER_KEY, TAGWATCH
from tests.backend.test_alerts_pipeline import T, World, walk_frames


def write_data(world: World, engine: Engine, round_: int) -> None:
    """A walk through the exclusion zone (frames, positions, an alert, commands) and audit
    records, as the services write them."""
    for m in walk_frames(world):
        f = fr.parse(m.payload)
        world.deliver([m], f.ts + 2 + 3600 * round_)
    for i in range(3):
        audit.append_now(engine, audit.Entry("officer", "subject.read", {"round": round_, "i": i}),
                         T + 3600 * round_ + i)  # fmt: skip


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order."""
    meta = MetaData()
    meta.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            order = list(table.primary_key.columns) or list(table.columns)
            out[name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
    return out


def run(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = subprocess.run([TAGWATCH, "backend", *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    return {**os.environ, "TAGWATCH_DATABASE_URL": db_url, "TAGWATCH_SERVER_KEY": SERVER_KEY.hex()}


def test_restore_drill(db_url: str, env: dict[str, str], tmp_path: Path) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    clock = ManualClock(T)
    world = World(engine, Registry(engine, KeyVault(SERVER_KEY), clock), clock)
    write_data(world, engine, 0)
    before = dump(engine)
    assert before["alerts"] and before["positions"] and len(before["audit_log"]) >= 3

    folder = tmp_path / "backups"
    folder.mkdir()
    made = run(env, "backup", "--out", str(folder))
    path = Path(made["file"])
    assert path.parent == folder and (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in folder.iterdir()] == [path.name]  # no -wal, no partial file
    with engine.connect() as conn:
        chain = audit.verify(conn)
    assert (made["audit_records"], made["audit_head"]) == (chain.checked, chain.head)

    write_data(world, engine, 1)
    with engine.begin() as conn:
        conn.execute(frames.delete().where(frames.c.id == before["frames"][0][0]))
    assert dump(engine) != before
    engine.dispose()

    restored = run(env, "restore", str(path), "--yes")
    engine = make_engine(db_url)
    after = dump(engine)
    new_audit = after.pop("audit_log")
    old_audit = before.pop("audit_log")
    assert after == before
    assert new_audit[: len(old_audit)] == old_audit and len(new_audit) == len(old_audit) + 1
    with engine.connect() as conn:
        last = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(1)).one()
        chain = audit.verify(conn)
    assert last.action == "backup.restore" and last.detail["sha256"] == made["sha256"]
    assert chain.ok and chain.checked == restored["audit_records"] == len(new_audit)
    # The sequences came back too: the next frame takes the id after the backed-up ones.
    with engine.begin() as conn:
        new_id = conn.execute(
            insert(frames).values(device=1001, boot=9, seq=1, mtype=1, flags=0, ts=T,
                                  received_at=T, via_unit=None, late=False, raw=b"x")
            .returning(frames.c.id)
        ).scalar_one()  # fmt: skip
    assert new_id == max(r[0] for r in before["frames"]) + 1
    engine.dispose()


def test_a_backup_with_a_broken_audit_chain_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = make_engine(url)
    upgrade(engine)
    for i in range(3):
        audit.append_now(engine, audit.Entry("a", "x", {"i": i}), T + i)
    kept = dump(engine)
    engine.dispose()
    copy = tmp_path / "backup.sqlite"
    backup(url, copy)
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = 2")
    with pytest.raises(BackupError, match=r"audit chain of the backup .* broken at record 2"):
        restore(url, copy, "test", T)
    engine = make_engine(url)
    assert dump(engine) == kept  # nothing touched
    engine.dispose()
    (tmp_path / "junk").write_bytes(b"not a database")
    with pytest.raises(BackupError, match="not an SQLite backup"):
        restore(url, tmp_path / "junk", "test", T)


def test_postgres_restore_refuses_while_services_are_connected(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """(SQLite cannot tell who has its file open: docs/operations.md says stop them.)"""
    db_url = postgres.create_database()
    engine = make_engine(db_url)
    upgrade(engine)
    made = backup(db_url, tmp_path / "b.pgdump").as_dict()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        with pytest.raises(BackupError, match="1 other connection"):
            restore(db_url, Path(made["file"]), "test", T)
    engine.dispose()


def test_prune_keeps_the_newest_and_what_is_recent(tmp_path: Path) -> None:
    now = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)
    names = [backup_name(now - timedelta(days=d), d % 2 == 0) for d in (0, 1, 13, 15, 40)]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("kept")
    gone = prune(tmp_path, 14, now)
    assert sorted(p.name for p in gone) == sorted(names[3:])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[:3], "notes.txt"])
    # However old, the newest backup is never deleted.
    assert prune(tmp_path, 0, now + timedelta(days=400)) == [
        tmp_path / names[2],
        tmp_path / names[1],
    ]
