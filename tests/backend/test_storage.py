"""Storage on real SQLite and real PostgreSQL: migrations, registry, retention, queries."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, func, insert, select

from backend.clock import ManualClock
from backend.registry import KeyVault, Registry, RegistryError, load_server_key
from backend.settings import Settings
from backend.storage import position_queries as pq
from backend.storage.database import alembic_config, current_revision, make_engine, upgrade
from backend.storage.retention import purge
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    audit_log,
    cell_of,
    devices,
    frames,
    metadata,
    positions,
    security_events,
    units,
)
from tests.backend.conftest import T0


def test_migrations_create_exactly_the_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    # The newest migration, whichever change added it: one linear chain, fully applied.
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    assert current_revision(engine) == head
    upgrade(engine)  # idempotent
    assert current_revision(engine) == head


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    eng = make_engine(f"sqlite:///{tmp_path}/x.db")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_keys_are_encrypted_at_rest_and_bound_to_the_device(
    engine: Engine, registry: Registry
) -> None:
    tag = registry.register(1001, TAG)
    given = bytes(range(100, 132))
    registry.register(1002, TAG, key=given)
    assert len(tag.key) == 32 and registry.get(1002).key == given  # type: ignore[union-attr]
    with engine.connect() as conn:
        blobs = {r.id: r.key_enc for r in conn.execute(select(devices.c.id, devices.c.key_enc))}
    assert tag.key not in blobs[1001] and given not in blobs[1002]
    # A blob copied onto another device's row does not decrypt; nor does another server key.
    with engine.begin() as conn:
        conn.execute(devices.update().where(devices.c.id == 1001).values(key_enc=blobs[1002]))
    with pytest.raises(RegistryError, match="does not decrypt"):
        registry.get(1001)
    with pytest.raises(RegistryError, match="does not decrypt"):
        Registry(engine, KeyVault(bytes(32))).get(1002)


def test_registry_refuses_bad_registrations(registry: Registry) -> None:
    registry.register(2001, HOME_UNIT)
    registry.register(1001, TAG, home_unit=2001)
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(1001, TAG)
    with pytest.raises(RegistryError, match="not registered"):
        registry.register(1003, TAG, home_unit=9999)
    with pytest.raises(RegistryError, match="32 bytes"):
        registry.register(1004, TAG, key=b"short")
    with pytest.raises(RegistryError, match="kind"):
        registry.register(1005, "phone")
    registry.pair(1001, None)
    assert registry.get(1001).home_unit is None  # type: ignore[union-attr]
    registry.retire(1001)
    assert [d.id for d in registry.all()] == [2001]


def test_server_key_file_is_created_private_and_reused(tmp_path: object) -> None:
    from pathlib import Path

    s = Settings(data_dir=Path(str(tmp_path)))
    k1 = load_server_key(s)
    path = Path(str(tmp_path)) / "server.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_server_key(s) == k1
    with pytest.raises(RegistryError, match="64 hex"):
        load_server_key(Settings(server_key="zz"))


def _position(device: int, ts: int, lat: int, lon: int) -> dict[str, int | bool]:
    return {
        "device": device,
        "ts": ts,
        "lat_e7": lat,
        "lon_e7": lon,
        "cell": cell_of(lat, lon),
        "acc_dm": 50,
        "fix_type": 2,
        "source": 0,
        "sats": 8,
        "speed_cms": 0,
        "course_cd": 0,
        "hdop_d": 9,
        "late": False,
        "frame_id": 0,
        "idx": 0,
    }


def test_retention_purges_in_batches_and_audits(engine: Engine, clock: ManualClock) -> None:
    day = 86_400
    now = clock.now()
    rows = [_position(1, int(now) - d * day, 507_000_000, -18_000_000) for d in range(10)]
    with engine.begin() as conn:
        conn.execute(insert(positions), rows)
        conn.execute(
            insert(security_events),
            [{"at": now - 40 * day, "reason": "mac", "topic": "x", "detail": ""}],
        )
    settings = Settings(
        retention_positions_days=4, retention_security_events_days=30, retention_batch_rows=2
    )
    deleted = purge(engine, settings, clock, actor="test")
    assert deleted["positions"] == 5  # ages 5..9 days
    assert deleted["security_events"] == 1
    assert deleted["frames"] == 0
    with engine.connect() as conn:
        left = sorted(r.ts for r in conn.execute(select(positions.c.ts)))
        audits = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    assert left == sorted(int(now) - d * day for d in range(5))
    by_class = {a.detail["data_class"]: a for a in audits}
    assert set(by_class) == {"positions", "device_events", "presence", "frames", "security_events",
                             "notification_outbox", "notification_pages", "command_deliveries",
                             "device_commands", "command_queue"}  # fmt: skip
    assert by_class["positions"].detail["deleted"] == 5
    assert all(a.actor == "test" and a.action == "retention.purge" for a in audits)
    assert purge(engine, settings, clock)["positions"] == 0  # nothing more to do


def test_trail_and_radius_queries(engine: Engine) -> None:
    rnd = random.Random(5)
    center = (507_192_000, -18_808_000)
    rows = []
    for i in range(3000):
        lat = center[0] + rnd.randint(-300_000, 300_000)  # +-3.3 km
        lon = center[1] + rnd.randint(-450_000, 450_000)
        rows.append(_position(1 + i % 30, T0 + rnd.randint(0, 7200), lat, lon))
    with engine.begin() as conn:
        conn.execute(insert(positions), rows)
    radius, t0, t1 = 800.0, T0 + 1000, T0 + 4000
    want = sorted(
        (r["device"], r["ts"])
        for r in rows
        if t0 <= int(r["ts"]) <= t1
        and pq.distance_m(center[0], center[1], int(r["lat_e7"]), int(r["lon_e7"])) <= radius
    )
    with engine.connect() as conn:
        hits = pq.near(conn, center[0], center[1], radius, t0, t1)
        trail = pq.trail(conn, 7, t0, t1)
        total = conn.execute(select(func.count()).select_from(frames)).scalar_one()
    assert want and sorted((h.device, h.ts) for h in hits) == want
    assert [h.distance_m for h in hits] == sorted(h.distance_m for h in hits)
    assert [r.ts for r in trail] == sorted(
        int(r["ts"]) for r in rows if r["device"] == 7 and t0 <= int(r["ts"]) <= t1
    )
    assert total == 0


def test_covering_cells_contain_the_circle() -> None:
    lat, lon = 515_000_000, -1_000
    cells = set(pq.covering_cells(lat, lon, 1500))
    rnd = random.Random(1)
    for _ in range(2000):
        dlat, dlon = rnd.randint(-140_000, 140_000), rnd.randint(-220_000, 220_000)
        if pq.distance_m(lat, lon, lat + dlat, lon + dlon) <= 1500:
            assert cell_of(lat + dlat, lon + dlon) in cells


def test_registry_writes_begin_immediate(tmp_path: Path, clock: ManualClock) -> None:
    """SQLite: a registration reads (is the id free?) then writes. Begun deferred, a commit
    by another connection in between (the API, ingest) makes the write fail at once with
    "database is locked", whatever the busy timeout; begun IMMEDIATE the registration holds
    the write lock from the start and the other writer waits (here, with no busy timeout, it
    gives up at once and the registration stands). Every registry write is IMMEDIATE."""
    path = tmp_path / "registry.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    registry = Registry(engine, KeyVault(bytes(range(32))), clock)
    registry.register(2001, HOME_UNIT)
    deferred: list[str] = []
    other: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _write(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and not conn.get_execution_options().get(
            "sqlite_immediate"
        ):
            deferred.append(statement)

    @event.listens_for(engine, "after_cursor_execute")
    def _between(_conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if other or statement.split()[:3] != ["SELECT", "devices.id", "FROM"]:
            return  # not the registration's "is the id free?"
        with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as rival:
            try:
                rival.execute("UPDATE devices SET registered_at = registered_at + 1")
                other.append("committed")
            except sqlite3.OperationalError as e:
                other.append(str(e))

    registry.register(1001, TAG, home_unit=2001)
    assert other == ["database is locked"]  # the registration held the lock
    registry.pair(1001, None)
    registry.retire(1001)
    assert [d.id for d in registry.all()] == [2001]
    assert deferred == []
    engine.dispose()


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("abc", "64 hex digits (0-9, a-f)"),
        ("00" * 16, "64 hex digits, got 32"),
        ("zz" * 32, "64 hex digits"),
    ],
)
def test_register_refuses_a_bad_key_with_a_sentence(tmp_path: Path, key: str, says: str) -> None:
    from typer.testing import CliRunner

    from tagwatch_cli import app

    env = {"TAGWATCH_DATA_DIR": str(tmp_path)}
    res = CliRunner().invoke(app, ["backend", "register", "7", "--key", key], env=env)
    assert res.exit_code == 2
    shown = " ".join(res.output.split())
    assert f"refused: the device's key must be {says}" in shown
    assert "fromhex" not in shown
    with pytest.raises(RegistryError, match="server key must be 64 hex digits, got 2"):
        load_server_key(Settings(server_key="00"))


def test_no_text_holding_nul_reaches_either_engine_in_any_parameter_shape(engine: Engine) -> None:
    """One row, many rows (an executemany, named on PostgreSQL, positional on SQLite), an
    IN list, a value among numbers: U+0000 in text is refused before the statement is sent,
    and what was stored stays; text without it, and bytes holding zeros, pass."""
    from backend.services.errors import Invalid

    row = {"name": "Unit", "kind": "police", "created_at": T0}
    with engine.begin() as conn:
        conn.execute(insert(units), [row])
    for rows in (
        [{**row, "name": "a\x00b"}],
        [{**row, "name": f"ok {n}"} for n in range(50)] + [{**row, "name": "\x00"}],
    ):
        with pytest.raises(Invalid, match="NUL"), engine.begin() as conn:
            conn.execute(insert(units), rows)
    with pytest.raises(Invalid, match="NUL"), engine.connect() as conn:
        conn.execute(select(units.c.id).where(units.c.name.in_(["x", "y\x00"]))).all()
    with engine.begin() as conn:
        conn.execute(insert(units), [{**row, "name": f"ok {n}"} for n in range(50)])
        conn.execute(
            insert(security_events).values(
                at=T0, reason="short", topic="tw/v1/tag/1/up", detail="", raw=b"\x00\x00"
            )
        )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(units)).scalar_one() == 51
