"""The upgrade path of docs/operations.md ("Upgrade"), on SQLite and PostgreSQL:

- a database at an older schema (0003_monitoring), with data the real pipeline wrote into
  it, is migrated to head: every row of every older column is still there, the audit chain
  verifies, and the pipeline goes on writing into it;
- ingest workers on a shared subscription of a real Mosquitto are restarted one at a time
  (SIGTERM, start, wait for /readyz) while devices keep sending: every frame is stored
  exactly once and acknowledged, and each restarted worker takes its share again."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, Integer, MetaData, func, select, text

from backend.broker import Mosquitto
from backend.clock import ManualClock
from backend.registry import KeyVault, Registry
from backend.rules.delivery import UNREACHED
from backend.security import audit
from backend.services.victims import link
from backend.storage.database import current_revision, head_revision, make_engine, upgrade
from backend.storage.schema import TAG, alerts, command_deliveries, frames, pairings
from firmware import frame as fr
from tests.backend.deploy import services
from tests.backend.fleet import Fleet
from tests.backend.test_alerts_pipeline import T, World, walk_frames
from tests.backend.test_victim_devices import VICTIM_ID, WARNING, is_warning
from tests.backend.test_victim_devices import World as VictimWorld

OLD = "0003_monitoring"


def rows_by_table(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    meta = MetaData()
    meta.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name == "alembic_version":
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            out[name] = [dict(r._mapping) for r in conn.execute(select(table).order_by(*order))]
    return out


def copy_rows(src: Engine, dst: Engine) -> None:
    """Every row of every table dst has, in the columns dst has (dst is at an older schema)."""
    have, want = MetaData(), MetaData()
    have.reflect(src)
    want.reflect(dst)
    with src.connect() as a, dst.begin() as b:
        for table in want.sorted_tables:
            if table.name == "alembic_version" or table.name not in have.tables:
                continue
            old = have.tables[table.name]
            cols = [c.name for c in table.columns if c.name in old.columns]
            rows = [dict(r._mapping) for r in a.execute(select(*(old.c[c] for c in cols)))]
            if rows:
                b.execute(table.insert(), rows)
            if dst.dialect.name == "postgresql":
                # Rows came with their ids: the sequences must move past them.
                for col in table.primary_key.columns:
                    if isinstance(col.type, Integer):
                        b.execute(
                            text(
                                "SELECT setval(pg_get_serial_sequence(:t, :c), "
                                f"(SELECT coalesce(max({col.name}), 0) + 1 FROM {table.name}), "
                                "false) WHERE pg_get_serial_sequence(:t, :c) IS NOT NULL"
                            ),
                            {"t": table.name, "c": col.name},
                        )


def test_an_older_schema_with_data_migrates_to_head(db_url: str, tmp_path: Path) -> None:
    # The data is what the real pipeline writes today, written at head into a scratch
    # database and copied into the older schema's columns: today's code need not run on an
    # old schema, only the migrations do.
    scratch = make_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    upgrade(scratch)
    vault = KeyVault(services.SERVER_KEY)
    clock = ManualClock(T)
    world = World(scratch, Registry(scratch, vault), clock)
    for m in walk_frames(world):
        world.deliver([m], fr.parse(m.payload).ts + 2)
    for i in range(3):
        audit.append_now(scratch, audit.Entry("officer", "subject.read", {"i": i}), T + i)
    engine = make_engine(db_url)
    upgrade(engine, OLD)
    copy_rows(scratch, engine)
    scratch.dispose()
    old = rows_by_table(engine)
    assert old["alerts"] and old["positions"] and old["audit_log"]

    upgrade(engine)
    assert current_revision(engine) == head_revision() != OLD
    new = rows_by_table(engine)
    for table, rows in old.items():
        kept = [{k: r[k] for k in rows[0]} for r in new[table]] if rows else new[table]
        assert kept == rows, table
    with engine.connect() as conn:
        assert audit.verify(conn).ok
        # The tag's pairing, made before pairings had a history, is its first one.
        assert [(r.tag, r.home_unit) for r in conn.execute(select(pairings))] == [
            (world.tag.id, world.unit.id)
        ]

    # The pipeline carries on in the migrated database: the walk again (new frames).
    world.attach(engine, Registry(engine, vault))
    world.deliver(walk_frames(world), T + 7200)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(frames)).scalar_one()
    assert n == len(old["frames"]) + 6
    engine.dispose()


def test_a_warning_given_up_before_0014_names_its_alert_after_it(
    db_url: str, tmp_path: Path
) -> None:
    """Deliveries the pipeline gave up at 0013 get the alert that told the officer
    (command_deliveries.alert_id), found from the alert's episodes; those it settled as
    acknowledged get none."""
    scratch = make_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    upgrade(scratch)
    clock = ManualClock(T)
    world = VictimWorld(scratch, Registry(scratch, KeyVault(services.SERVER_KEY), clock), clock)
    with scratch.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    lost: list[int] = []

    def first_lost_then_mute(payload: bytes) -> bool:
        """The first warning's first send lost, the alert-distance warning never answered."""
        if not is_warning(payload):
            return True
        message = fr.parse(payload).records[0].message
        lost.append(message)
        return message == WARNING and lost.count(WARNING) > 1

    end = world.approach(first_lost_then_mute)
    world.ticks_after(end, first_lost_then_mute)
    engine = make_engine(db_url)
    upgrade(engine, "0013_command_deliveries")
    copy_rows(scratch, engine)
    scratch.dispose()
    upgrade(engine)
    d = command_deliveries.c
    with engine.connect() as conn:
        alert = conn.execute(select(alerts.c.id).where(alerts.c.type == UNREACHED)).scalar_one()
        rows = conn.execute(select(d.key, d.outcome, d.alert_id).order_by(d.first_at)).all()
    assert [(r.outcome, r.alert_id) for r in rows] == [("acknowledged", None), ("unreached", alert)]
    engine.dispose()


def _received(worker: services.Service) -> float:
    text = httpx.get(worker.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tagwatch_ingest_frames_received_total":
                return float(s.value)
    raise AssertionError("no tagwatch_ingest_frames_received_total")


def test_rolling_restart_of_workers_loses_nothing(
    db_url: str, broker: Mosquitto, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    registry = Registry(engine, KeyVault(services.SERVER_KEY))
    keys = {1000 + i: registry.register(1000 + i, TAG).key for i in range(10)}
    engine.dispose()
    env = services.service_env(db_url, broker.port, TAGWATCH_INGEST_BATCH_SIZE="50")
    workers = [services.worker(env, tmp_path, i).start() for i in (1, 2)]
    fleet = Fleet(broker.host, broker.port, keys, fixes=2, client_id="upgrade-fleet")
    stop = threading.Event()
    rounds = [1]

    def devices_keep_sending() -> None:
        while not stop.is_set():
            seq = rounds[-1]
            fleet.publish(fleet.frames(1, first_seq=seq))
            rounds.append(seq + 1)
            stop.wait(0.1)

    sender = threading.Thread(target=devices_keep_sending)
    try:
        for w in workers:
            w.ready()
        fleet.start()
        sender.start()
        for w in workers:
            before = len(rounds)
            w.stop()  # SIGTERM, as `systemctl restart tagwatch-ingest@N` does
            w.start().ready()
            assert len(rounds) > before  # devices sent while it was away
        stop.set()
        sender.join(30)
        assert fleet.wait_all_acked(90), "\n".join(w.log() for w in workers)
        # Both restarted workers take their share of the subscription again.
        received = {w.name: _received(w) for w in workers}
        fleet.publish(fleet.frames(3, first_seq=rounds[-1]))
        assert fleet.wait_all_acked(60)
        assert all(_received(w) > received[w.name] for w in workers), received
    finally:
        stop.set()
        fleet.stop()
        for w in workers:
            w.stop()
    sent = len(keys) * (rounds[-1] - 1 + 3)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(frames)).scalar_one()
        distinct = conn.execute(
            select(func.count()).select_from(
                select(frames.c.device, frames.c.seq).distinct().subquery()
            )
        ).scalar_one()
    engine.dispose()
    assert len(fleet.acked) == stored == distinct == sent
    assert fleet.bad_acks == 0
