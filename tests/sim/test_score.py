"""Alert scoring against truth: grace/dwell applied to truth, matching, latency, rates."""

from __future__ import annotations

from sim import truth as tr
from sim.score import CRITERIA, Alert, Criterion, false_rate, score_alerts

M = 60_000


def _truth(*eps: tr.Episode) -> tr.TruthLog:
    return tr.TruthLog(sorted(eps), 0, 86_400_000)


def test_breach_beyond_grace_must_alert_and_short_one_must_not() -> None:
    long = tr.Episode(10 * M, 60 * M, tr.CURFEW_BREACH, 1)
    short = tr.Episode(100 * M, 105 * M, tr.CURFEW_BREACH, 2)  # under the 10 min grace
    truth = _truth(long, short)
    crit = {tr.CURFEW_BREACH: CRITERIA[tr.CURFEW_BREACH]}
    ok = [Alert(tr.CURFEW_BREACH, 1, 10 * M, 21 * M)]
    s = score_alerts(truth, ok, crit)[tr.CURFEW_BREACH]
    assert (s.episodes, s.detected, s.recall, s.precision) == (1, 1, 1.0, 1.0)
    assert s.latencies_ms == [M]  # raised 1 min after the grace ran out
    # An alert for the near miss is a false alert; the long one missed.
    bad = [Alert(tr.CURFEW_BREACH, 2, 100 * M, 102 * M)]
    s = score_alerts(truth, bad, crit)[tr.CURFEW_BREACH]
    assert (s.detected, s.recall, s.false_alerts, s.precision) == (0, 0.0, 1, 0.0)
    assert s.missed == [{"subject": 1, "start_ms": 10 * M, "end_ms": 60 * M}]


def test_alerts_match_only_their_subject_and_type() -> None:
    ep = tr.Episode(5 * M, 6 * M, tr.STRAP_CUT, 3)
    alerts = [
        Alert(tr.STRAP_CUT, 4, 5 * M, 5 * M),  # another subject
        Alert(tr.CASE_OPEN, 3, 5 * M, 5 * M),  # another type
    ]
    got = score_alerts(_truth(ep), alerts)
    assert got[tr.STRAP_CUT].detected == 0 and got[tr.STRAP_CUT].false_alerts == 1
    assert got[tr.CASE_OPEN].false_alerts == 1 and got[tr.CASE_OPEN].episodes == 0


def test_late_detection_is_listed_and_percentiles_computed() -> None:
    crit = {tr.STRAP_CUT: Criterion(0, 60_000, 60_000)}
    eps = [tr.Episode(i * 10 * M, i * 10 * M + M, tr.STRAP_CUT, i) for i in range(4)]
    alerts = [Alert(tr.STRAP_CUT, i, i * 10 * M, i * 10 * M + (i + 1) * 20_000) for i in range(4)]
    s = score_alerts(_truth(*eps), alerts, crit)[tr.STRAP_CUT]
    assert s.recall == 1.0
    assert [x["subject"] for x in s.late] == [3]  # 60 s is allowed, 80 s is not
    assert s.latency_p(50) == 50.0
    assert false_rate(1, 50.0) == 2.0


def test_two_alerts_for_one_episode_are_both_true() -> None:
    ep = tr.Episode(0, 30 * M, tr.EXCLUSION_ZONE_ENTRY, 0)
    alerts = [
        Alert(tr.EXCLUSION_ZONE_ENTRY, 0, M, 2 * M),
        Alert(tr.EXCLUSION_ZONE_ENTRY, 0, 20 * M, 21 * M),
    ]
    s = score_alerts(_truth(ep), alerts)[tr.EXCLUSION_ZONE_ENTRY]
    assert (s.detected, s.true_alerts, s.false_alerts) == (1, 2, 0)


def test_a_zone_entry_without_coverage_is_due_when_coverage_returns() -> None:
    # Subject 0 enters a zone inside a dead zone; coverage returns after an outage for
    # everyone that follows on. The entry is due then (no tag could report sooner) and
    # must be reported within 2 minutes of it; a tamper in the same gap is not held back.
    entry = tr.Episode(10 * M, 20 * M, tr.EXCLUSION_ZONE_ENTRY, 0)
    dead = tr.Episode(9 * M, 25 * M, tr.CELLULAR_DEAD_ZONE, 0)
    outage = tr.Episode(24 * M, 30 * M, tr.CELLULAR_OUTAGE, tr.ALL_SUBJECTS)
    other = tr.Episode(0, 60 * M, tr.CELLULAR_DEAD_ZONE, 1)  # another subject's gap
    cut = tr.Episode(12 * M, 13 * M, tr.STRAP_CUT, 0)
    truth = _truth(entry, dead, outage, other, cut)
    on_time = [Alert(tr.EXCLUSION_ZONE_ENTRY, 0, 10 * M, 31 * M)]
    s = score_alerts(truth, on_time)[tr.EXCLUSION_ZONE_ENTRY]
    assert s.detected == 1 and s.late == [] and s.latencies_ms == [M]
    late = [Alert(tr.EXCLUSION_ZONE_ENTRY, 0, 10 * M, 33 * M)]
    s = score_alerts(truth, late)[tr.EXCLUSION_ZONE_ENTRY]
    assert s.late == [{"subject": 0, "start_ms": 10 * M, "latency_ms": 3 * M, "due_ms": 30 * M}]
    tamper = [Alert(tr.STRAP_CUT, 0, 12 * M, 31 * M)]
    assert score_alerts(truth, tamper)[tr.STRAP_CUT].late[0]["latency_ms"] == 19 * M
