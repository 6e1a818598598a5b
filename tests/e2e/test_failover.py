"""Fault tests on the HA stack (sim/ha.py): a simulated fleet (in-process tags, one tag under
the micropython binary logging in with its own credentials, home units) streams through two
independent Mosquitto brokers with the generated ACL, two ingest workers and PostgreSQL
under Patroni, while, in turn:

1. the PostgreSQL primary is killed (Patroni and PostgreSQL SIGKILLed; Patroni promotes the
   synchronous replica);
2. one broker is killed (devices, home units and workers fail over to the other);
3. an ingest worker is killed (and restarted 10 simulated minutes later, as its supervisor
   would);
4. the old primary comes back, as a replica (pg_rewind, then synchronous standby again).

A tamper event is injected while each of the first three faults lasts (failover.toml). After
the run: every frame the firmware sealed is stored exactly once and acknowledged (nothing
left on a tag), the tamper alerts were raised, and the time from each fault to the first
new stored frame is reported (printed, and in docs/scaling.md).

`pytest -m failover` runs them alone; `make test` runs them with the rest."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.storage.schema import frames
from sim import scenario
from sim import score as sc_score
from sim import truth as tr
from sim.fleet import Fleet, RunOptions
from sim.run import clip_truth, run_window

pytestmark = [pytest.mark.failover, pytest.mark.broker, pytest.mark.micropython]
SCENARIO = Path(__file__).with_name("failover.toml")
MIN = 60_000


@dataclass
class Fault:
    name: str
    at_min: int  # simulated minutes after the run's start (09:00)
    done: bool = False
    frames_before: int = -1
    wall: float = 0.0
    recovered_s: float | None = None  # wall seconds to the first frame stored after it
    detail: dict[str, Any] = field(default_factory=dict)


def stored(fleet: Fleet) -> int | None:
    """Frames stored so far, or None while the database cannot answer (a failover)."""
    assert fleet.backend is not None
    try:
        with fleet.backend.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(frames)).scalar_one())
    except Exception:
        return None


@dataclass
class FaultRun:
    faults: list[Fault]
    completeness: sc_score.Completeness
    scores: dict[str, sc_score.TypeScore]
    counters: dict[str, int]
    roles: dict[str, str | None]
    sync_standby: str | None


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> FaultRun:
    sc = scenario.load(SCENARIO)
    opts = RunOptions(seed=5, hil=1, from_hour=9, hours=1.5, drain_s=1800, rules=True, ha=True,
                      workdir=tmp_path_factory.mktemp("ha"))  # fmt: skip
    faults = [
        Fault("postgres_primary_killed", 20),
        Fault("broker_killed", 40),
        Fault("worker_killed", 60),
        Fault("worker_restarted", 70),
        Fault("old_primary_back_as_replica", 80),
    ]
    with Fleet(sc, opts) as fleet:
        fleet.setup()
        assert fleet.cluster is not None and fleet.backend is not None
        cluster, backend = fleet.cluster, fleet.backend
        old_primary = cluster.primary()
        assert old_primary is not None
        start = fleet.sim.start_ms + 9 * 3_600_000

        def inject(f: Fault) -> None:
            f.frames_before = stored(fleet) or 0
            f.wall = time.monotonic()
            if f.name == "postgres_primary_killed":
                old_primary.kill()
                new = cluster.wait_primary(other_than=old_primary)
                f.detail["promoted_after_s"] = round(time.monotonic() - f.wall, 1)
                f.detail["new_primary"] = new.name
            elif f.name == "broker_killed":
                fleet.brokers.brokers[0].kill()
            elif f.name == "worker_killed":
                backend.kill_worker(0)
            elif f.name == "worker_restarted":
                backend.start_worker(0)
            else:
                old_primary.start()
                cluster.wait_replicating()
                f.detail["replica_after_s"] = round(time.monotonic() - f.wall, 1)

        def progress(done: int, _total: int, _live: dict[str, Any]) -> None:
            for f in faults:
                if not f.done and done >= f.at_min * MIN:
                    f.done = True
                    inject(f)
                if f.done and f.recovered_s is None:
                    n = stored(fleet)
                    if n is not None and n > f.frames_before:
                        f.recovered_s = round(time.monotonic() - f.wall, 1)

        result = fleet.run(progress)
        window = run_window(result)
        assert window is not None and window[0] == start
        truth = clip_truth(result.sim.truth, *window)
        comp = sc_score.completeness(result, backend.engine)
        alerts = sc_score.TableAlertSource(backend.engine, fleet.subject_of).alerts()
        scores = sc_score.score_alerts(truth, alerts)
        roles = {n.name: n.role() for n in cluster.nodes}
        standby = cluster.sync_standby()
        report = {f.name: {"recovered_s": f.recovered_s, **f.detail} for f in faults}
        print("\nfault -> first new stored frame (wall s):", json.dumps(report))
        print(
            "DEBUG pending",
            sorted(result.pending),
            "counters",
            result.counters,
            "hil",
            [h.device for h in result.hil],
            "uplink failovers",
            fleet.uplink.failovers,
            fleet.uplink.current,
        )
        return FaultRun(faults, comp, scores, dict(result.counters), roles, standby)


def test_every_frame_stored_once_and_acknowledged_through_every_fault(fault_run: FaultRun) -> None:
    c = fault_run.completeness
    assert c.ok, c.to_json()
    assert c.frames_stored > 100 and c.frames_on_tags == 0, c.to_json()
    # Retransmissions after the faults were de-duplicated by the database, not stored twice.
    assert c.frames_unknown == 0 and c.positions_doubled == 0


def test_each_fault_is_followed_by_new_frames_being_stored(fault_run: FaultRun) -> None:
    for f in fault_run.faults:
        assert f.done, f.name
        assert f.recovered_s is not None, f"nothing stored after {f.name}"
    kill = fault_run.faults[0]
    assert kill.detail["new_primary"] != "pg0"  # the replica was promoted


def test_tamper_alerts_raised_for_events_during_the_faults(fault_run: FaultRun) -> None:
    for kind in (tr.STRAP_CUT, tr.CASE_OPEN):
        s = fault_run.scores[kind]
        assert s.episodes >= 1 and not s.missed, (kind, s)


def test_the_old_primary_came_back_as_the_synchronous_replica(fault_run: FaultRun) -> None:
    assert sorted(r for r in fault_run.roles.values() if r) == ["primary", "replica"]
    assert fault_run.roles["pg0"] == "replica"
    assert fault_run.sync_standby == "pg0"
    # The workers' batches failed while there was no primary, and were run again.
    assert fault_run.counters.get("ingest_batch_failed", 0) >= 1, fault_run.counters
