"""The CI scenario suite: a simulated fleet through the real stack — CPython fleet tags and
tags under the micropython binary, home units on the simulator radio, a real Mosquitto, the
backend's ingest and rules engine on a simulated clock — scored against ground truth.

One run of `ci-gate.toml` (beside this file: 14 subjects, the 23-hour day the clocks go
forward, every alert type the gate requires injected at least twice, with near misses)
serves every test here. The gate fails on any position lost or doubled between what the
tags' firmware recorded and what the backend stored, and (`alert_failures`) on: recall below
100 % for curfew breach beyond grace, exclusion-zone entry beyond dwell, strap and case
tamper; more than 1 false alert per 100 tag-days (four subjects linger half an hour 20 or
50 m outside their exclusion zone's edge: any alert for them is false); a tamper reported
later than 60 s or a zone entry later than 2 minutes of simulated time after it became due
(docs/simulator.md, "Scoring")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select

from backend.storage.schema import presence
from firmware import frame as fr
from sim import scenario
from sim import score as sc_score
from sim import truth as tr
from sim.fleet import Fleet, RunOptions, RunResult
from sim.gate import failures
from sim.run import Outcome, run
from sim.score import Alert, TypeScore, score_alerts

MUST_DETECT = (tr.CURFEW_BREACH, tr.EXCLUSION_ZONE_ENTRY, tr.STRAP_CUT, tr.CASE_OPEN)
GATE_SCENARIO = Path(__file__).with_name("ci-gate.toml")
# The gate day's fixture runs a simulated day through the whole stack (about two minutes on
# a quiet CI machine, four on a busy one): the first test's limit covers it.
pytestmark = pytest.mark.timeout(900)


def alert_failures(scores: dict[str, TypeScore], tag_days: float) -> list[str]:
    """What the CI gate refuses (sim.gate.failures), for the types this day gates."""
    return failures(scores, tag_days, MUST_DETECT)


def test_alert_gate_refuses_a_miss_a_late_tamper_and_false_alerts() -> None:
    truth = tr.TruthLog(
        [
            tr.Episode(0, 60_000, tr.STRAP_CUT, 0),
            tr.Episode(0, 3_600_000, tr.CURFEW_BREACH, 1),
        ],
        0,
        86_400_000,
    )
    good = [Alert(tr.STRAP_CUT, 0, 0, 20_000), Alert(tr.CURFEW_BREACH, 1, 0, 700_000)]
    assert alert_failures(score_alerts(truth, good), 10.0) == []
    late = [Alert(tr.STRAP_CUT, 0, 0, 90_000), Alert(tr.CURFEW_BREACH, 1, 0, 700_000)]
    assert any("late" in f for f in alert_failures(score_alerts(truth, late), 10.0))
    missed = [Alert(tr.STRAP_CUT, 0, 0, 20_000)]
    assert any("missed" in f for f in alert_failures(score_alerts(truth, missed), 10.0))
    noisy = [*good, Alert(tr.CASE_OPEN, 3, 0, 0)]
    assert any("false" in f for f in alert_failures(score_alerts(truth, noisy), 10.0))


RULE_COUNTS: dict[str, int] = {}
PRESENCE_STORED: list[int] = []  # presence rows the run's backend stored


def table_source(fleet: Fleet, result: RunResult) -> sc_score.AlertSource:
    """The alerts table, as run() would read it; and the rules sink's counters and the
    presence stored on the way (the backend's database goes when the run ends)."""
    assert fleet.backend is not None and fleet.backend.running
    RULE_COUNTS.update(fleet.backend.rule_counts())
    with fleet.backend.engine.connect() as conn:
        PRESENCE_STORED.append(
            conn.execute(select(func.count()).select_from(presence)).scalar_one()
        )
    return sc_score.TableAlertSource(fleet.backend.engine, fleet.subject_of)


def test_an_alert_covering_a_breach_matches_it_however_its_start_was_measured() -> None:
    # The home unit lost the tag at the bus stop by the door 6 minutes before the subject
    # left the home zone (the truth's start): the alert spans the breach, so it is detected
    # and not false; an alert over a different span of the same subject is false.
    truth = tr.TruthLog([tr.Episode(3_600_000, 9_000_000, tr.CURFEW_BREACH, 1)], 0, 86_400_000)
    early = Alert(tr.CURFEW_BREACH, 1, 3_240_000, 3_900_000, 9_000_000)
    s = score_alerts(truth, [early])[tr.CURFEW_BREACH]
    assert (s.detected, s.false_alerts, s.latencies_ms) == (1, 0, [0])
    elsewhere = Alert(tr.CURFEW_BREACH, 1, 20_000_000, 20_700_000, 21_000_000)
    s = score_alerts(truth, [early, elsewhere])[tr.CURFEW_BREACH]
    assert (s.detected, s.false_alerts) == (1, 1)
    assert alert_failures(score_alerts(truth, [elsewhere]), 10.0)


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    sc = scenario.load(GATE_SCENARIO)
    opts = RunOptions(seed=3, days=1, hil=2, drain_s=3600, rules=True)
    out = tmp_path_factory.mktemp("gate") / "out"
    return run(sc, opts, out, Console(quiet=True), alert_source=table_source)


@pytest.mark.broker
@pytest.mark.micropython
def test_gate_day_through_the_stack_loses_and_doubles_nothing(gate_run: Outcome) -> None:
    out = gate_run
    c = out.completeness
    assert c is not None
    assert c.ok, c.to_json()
    assert c.positions_stored > 100 and c.frames_stored == c.frames_sealed - c.frames_on_tags
    r = out.result
    # Both runtimes took part: the HIL tags' frames are stored like the fleet's.
    assert len(r.hil) == 2
    for h in r.hil:
        assert any(k[0] == h.device for k in r.frames), f"HIL tag {h.device} sent nothing"
    # The HIL tags have home units as the fleet's do: each was acknowledged at home and
    # handed frames to its unit, which relayed them to the backend.
    for h in r.hil:
        assert h.tag.radio.acks_written, f"HIL tag {h.device} never heard its home unit"
        relayed = {(f.device, f.boot, f.seq) for f in map(fr.parse, h.tag.radio.offloaded)}
        assert relayed and relayed <= set(r.frames), f"HIL tag {h.device} relayed nothing"
    # RF home mode happened: frames were relayed by home units and stored, and each unit's
    # presence reports (for its own paired tags) were stored, none refused.
    assert r.counters.get("home_unit_relay_queued", 0) > 0
    assert PRESENCE_STORED and PRESENCE_STORED[0] > 0
    assert r.counters.get("ingest_records_refused", 0) == 0, r.counters
    assert r.counters["barrier_timeouts"] == 0
    # No command was pushed out of a unit's box, and a frame the backend acknowledged is not
    # relayed again (the few left: frames a tag uploaded over its modem and offered at home).
    assert r.counters.get("home_unit_downlink_dropped", 0) == 0, r.counters
    assert r.counters.get("ingest_duplicates", 0) <= max(5, c.frames_stored // 100), r.counters
    # The rules engine evaluated the run's batches and clock ticks, and never failed.
    assert RULE_COUNTS.get("ticks", 0) > 0, RULE_COUNTS
    assert RULE_COUNTS.get("evaluation_failed", 0) == 0, RULE_COUNTS
    # Each injected strap cut reached the backend as a tamper record.
    for e in r.sim.truth.of_type(tr.STRAP_CUT):
        dev = r.sim.subjects[e.subject].tag_id
        tampers = [
            rec
            for k, p in r.frames.items()
            if k[0] == dev
            for rec in fr.parse(p).records
            if rec.type == fr.TAMPER and rec.state == fr.OPEN
        ]
        assert tampers, f"strap cut of subject {e.subject} never reached the backend"
    assert out.paths["map"].stat().st_size > 10_000
    assert out.paths["timeline"].stat().st_size > 5_000


@pytest.mark.broker
@pytest.mark.micropython
def test_gate_day_alerts_pass_the_ci_gate(gate_run: Outcome) -> None:
    out = gate_run
    r = out.result
    assert out.scores is not None, out.report["alerts_note"]
    days = sc_score.tag_days(r)
    report = json.dumps(out.report["alerts"], indent=1)
    # The gate means something only if there was something to catch: every required type
    # has truth episodes long enough to demand an alert, and the backend raised alerts.
    for kind in MUST_DETECT:
        s = out.scores[kind]
        assert s.episodes >= 1, f"no {kind} episode to detect in the truth log"
        assert s.detected == s.episodes, report
    assert days >= 12, days
    assert alert_failures(out.scores, days) == [], report
    # The edge lingerers were there, fixed often (their tags sampling fast near the zone),
    # and raised no exclusion alert (any would be false: they never entered).
    lingers = [i for i in r.sim.injections if i.type == "zone_edge_linger"]
    assert len(lingers) == 4
    for inj in lingers:
        assert inj.end_ms is not None
        dev = r.sim.subjects[inj.subject].tag_id
        fixes = [
            f.ts - rec.values[0]
            for k, p in r.frames.items()
            if k[0] == dev
            for f in [fr.parse(p)]
            for rec in f.records
            if rec.type == fr.FIX
        ]
        during = [t for t in fixes if inj.start_ms <= t * 1000 < inj.end_ms]
        assert len(during) >= 60, (inj.subject, len(during))
        assert not [
            a for a in out.alerts if a.type == tr.EXCLUSION_ZONE_ENTRY and a.subject == inj.subject
        ], f"exclusion alert for subject {inj.subject}, lingering {inj.metres:.0f} m outside"
    # Near misses stayed quiet: the 5-minute late return (within grace) raised nothing.
    near = [e for e in r.sim.truth.of_type(tr.CURFEW_BREACH) if e.duration_ms < 600_000]
    assert near, "the scenario's near miss is gone from the truth log"
    for e in near:
        assert not [
            a for a in out.alerts if a.type == tr.CURFEW_BREACH and a.subject == e.subject
        ], f"curfew alert for subject {e.subject}'s {e.duration_ms / 60_000:.1f}-minute lateness"
