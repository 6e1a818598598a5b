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


def test_a_return_within_a_fix_interval_of_the_grace_is_a_near_miss() -> None:
    # Home 9 min 57 s into the window (gate-week, day 1, subject 94): a tag on its way home
    # takes a fix a minute, so the rule cannot know it is home before the grace runs out;
    # its alert is excused. A return a minute and a half inside the grace is no near miss.
    crit = {tr.CURFEW_BREACH: CRITERIA[tr.CURFEW_BREACH]}
    edge = tr.Episode(0, 9 * M + 57_000, tr.CURFEW_BREACH, 1)
    alert = Alert(tr.CURFEW_BREACH, 1, 0, 10 * M + 5000, 10 * M + 15_000)
    s = score_alerts(_truth(edge), [alert], crit)[tr.CURFEW_BREACH]
    assert (s.episodes, s.false_alerts, s.excused_alerts, s.borderline) == (0, 0, 1, 1)
    assert s.excused == [{"subject": 1, "start_ms": 0}]  # listed, not only counted
    inside = tr.Episode(0, 8 * M + 30_000, tr.CURFEW_BREACH, 1)
    s = score_alerts(_truth(inside), [alert], crit)[tr.CURFEW_BREACH]
    assert (s.false_alerts, s.excused_alerts) == (1, 0)


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
    row = {"subject": 0, "start_ms": 10 * M, "latency_ms": 3 * M, "due_ms": 30 * M}
    assert s.late == [{**row, "plain_latency_ms": 22 * M}]  # due at 11 without the gaps
    tamper = [Alert(tr.STRAP_CUT, 0, 12 * M, 31 * M)]
    assert score_alerts(truth, tamper)[tr.STRAP_CUT].late[0]["latency_ms"] == 19 * M


def test_a_zone_entry_in_a_dead_zone_the_run_ends_in_is_unreported_not_missed() -> None:
    # gate-week seed 962697929, 07:00-09:00 of day 1 (subject 84): into a dead zone, a
    # minute later into an exclusion zone, both until the run's end. No tag could report the
    # entry within the run: it is listed as unreported, not missed. The same entry with
    # coverage back a minute before the end and still no alert is missed.
    entry = tr.Episode(10 * M, 60 * M, tr.EXCLUSION_ZONE_ENTRY, 0)
    dead = tr.Episode(9 * M, 60 * M, tr.CELLULAR_DEAD_ZONE, 0)
    truth = tr.TruthLog(sorted([entry, dead]), 0, 60 * M)
    s = score_alerts(truth, [])[tr.EXCLUSION_ZONE_ENTRY]
    assert (s.episodes, s.missed, s.recall) == (0, [], None)
    assert s.unreported == [{"subject": 0, "start_ms": 10 * M}]
    back = tr.TruthLog(
        sorted([entry, tr.Episode(9 * M, 59 * M, tr.CELLULAR_DEAD_ZONE, 0)]), 0, 60 * M
    )
    s = score_alerts(back, [])[tr.EXCLUSION_ZONE_ENTRY]
    assert (s.episodes, s.unreported) == (1, [])
    assert s.missed == [{"subject": 0, "start_ms": 10 * M, "end_ms": 60 * M}]


def test_an_episode_whose_evidence_reached_the_backend_late_is_due_then_and_listed() -> None:
    # Three approaches due at minutes 11, 21 and 31; the simulation knows the evidence of
    # the second only reached the backend at minute 26 (a device offline). Its alert at
    # minute 27 is in time from then, but listed as held back; the third's evidence was
    # not late, so its alert 3 minutes after due is late.
    eps = [tr.Episode(s * M, (s + 5) * M, tr.STRAP_CUT, 0) for s in (10, 20, 30)]
    delivered = {20 * M: 26 * M}
    crit = {tr.STRAP_CUT: Criterion(M, 2 * M, 0, evidence=lambda e, due: delivered.get(e.start_ms))}
    alerts = [
        Alert(tr.STRAP_CUT, 0, s * M, (s + r) * M, (s + 5) * M)
        for s, r in ((10, 2), (20, 7), (30, 4))
    ]
    s = score_alerts(_truth(*eps), alerts, crit)[tr.STRAP_CUT]
    assert s.recall == 1.0
    assert s.latencies_ms == [M, M, 3 * M]
    assert s.plain_latencies_ms == [M, 6 * M, 3 * M]
    moved = {"subject": 0, "start_ms": 20 * M, "latency_ms": M, "due_ms": 26 * M}
    assert s.held_back == [{**moved, "plain_latency_ms": 6 * M}]
    assert s.late == [{"subject": 0, "start_ms": 30 * M, "latency_ms": 3 * M}]
    assert s.latency_p(50, plain=True) == 180.0


def _shielded(start: int, end: int, moving: list[int], subject: int = 1) -> tr.Episode:
    return tr.Episode(start, end, tr.FOIL_SHIELDING, subject, {"moving_min": moving})


def test_shielding_is_due_after_ten_moving_minutes_and_the_grace() -> None:
    # Moving the whole time from minute 10: the 10th moving minute starts at 19, the grace
    # runs to 29; kept on to 45, it must alert. At rest under foil: nothing to detect.
    moving = [m * M for m in range(10, 45)]
    walk = _shielded(10 * M, 45 * M, moving)
    rest = _shielded(100 * M, 200 * M, [], subject=2)
    truth = _truth(walk, rest)
    crit = {tr.FOIL_SHIELDING: CRITERIA[tr.FOIL_SHIELDING]}
    s = score_alerts(truth, [Alert(tr.FOIL_SHIELDING, 1, 19 * M, 30 * M, 46 * M)], crit)
    got = s[tr.FOIL_SHIELDING]
    assert (got.episodes, got.detected, got.latencies_ms, got.false_alerts) == (1, 1, [M], 0)
    # Ten moving minutes spread over more than the firmware's hour never add up.
    sparse = _shielded(0, 300 * M, [m * 7 * M for m in range(40)])
    assert score_alerts(_truth(sparse), [], crit)[tr.FOIL_SHIELDING].episodes == 0
    # An alert for the one at rest is false.
    s = score_alerts(truth, [Alert(tr.FOIL_SHIELDING, 2, 120 * M, 130 * M)], crit)
    assert s[tr.FOIL_SHIELDING].false_alerts == 1 and s[tr.FOIL_SHIELDING].missed


def test_shielding_removed_just_after_the_escalation_is_borderline() -> None:
    # Foil off a minute after the grace ran out: the next fix may or may not come first.
    edge = _shielded(10 * M, 30 * M, [m * M for m in range(10, 30)])
    crit = {tr.FOIL_SHIELDING: CRITERIA[tr.FOIL_SHIELDING]}
    quiet = score_alerts(_truth(edge), [], crit)[tr.FOIL_SHIELDING]
    assert (quiet.episodes, quiet.borderline, quiet.false_alerts) == (0, 1, 0)
    loud = score_alerts(_truth(edge), [Alert(tr.FOIL_SHIELDING, 1, 19 * M, 29 * M, 30 * M)], crit)
    assert (loud[tr.FOIL_SHIELDING].false_alerts, loud[tr.FOIL_SHIELDING].excused_alerts) == (0, 1)


def test_a_critical_battery_warns_before_it_runs_flat_and_a_charged_one_is_no_false_alert() -> None:
    flat = tr.Episode(600 * M, 900 * M, tr.FLAT_BATTERY, 1)
    critical = tr.Episode(100 * M, 600 * M, tr.BATTERY_CRITICAL, 1)
    saved = tr.Episode(200 * M, 260 * M, tr.BATTERY_CRITICAL, 2)  # charged at 4 %
    truth = _truth(flat, critical, saved)
    crit = {tr.FLAT_BATTERY: CRITERIA[tr.FLAT_BATTERY]}
    warned = [
        Alert(tr.FLAT_BATTERY, 1, 101 * M, 103 * M),
        Alert(tr.FLAT_BATTERY, 2, 201 * M, 202 * M, 260 * M),
    ]
    s = score_alerts(truth, warned, crit)[tr.FLAT_BATTERY]
    assert (s.episodes, s.detected, s.latencies_ms) == (1, 1, [0])
    assert (s.false_alerts, s.excused_alerts) == (0, 1)
    stray = [Alert(tr.FLAT_BATTERY, 3, 201 * M, 202 * M)]
    assert score_alerts(truth, stray, crit)[tr.FLAT_BATTERY].false_alerts == 1


def test_a_day_not_charged_is_due_at_its_end_and_the_first_day_is_not_judged() -> None:
    day = 1440 * M
    first = tr.Episode(0, day, tr.NOT_CHARGED, 1)
    second = tr.Episode(day, 2 * day, tr.NOT_CHARGED, 1)
    truth = tr.TruthLog([first, second], 0, 3 * day)
    crit = {tr.NOT_CHARGED: CRITERIA[tr.NOT_CHARGED]}
    s = score_alerts(truth, [Alert(tr.NOT_CHARGED, 1, day, 2 * day + 3 * M, 2 * day)], crit)
    got = s[tr.NOT_CHARGED]
    assert (got.episodes, got.detected, got.latencies_ms, got.false_alerts) == (1, 1, [3 * M], 0)


def test_a_day_a_partial_run_ends_in_is_not_judged() -> None:
    # A window ending 45 s after midnight (the drain ended once the tags were empty): the
    # truth cut the new day's episode there (ongoing_at_end). The rule judges a day when it
    # is over, so no alert can be due for it; it was scored missed (gate-week, day 1
    # 12:00-24:00, subjects 24 and 26).
    day = 1440 * M
    whole = tr.Episode(day, 2 * day, tr.NOT_CHARGED, 1)
    cut = tr.Episode(2 * day, 2 * day + 45_000, tr.NOT_CHARGED, 1, {"ongoing_at_end": True})
    truth = tr.TruthLog([whole, cut], 0, 2 * day + 45_000)
    crit = {tr.NOT_CHARGED: CRITERIA[tr.NOT_CHARGED]}
    got = score_alerts(truth, [Alert(tr.NOT_CHARGED, 1, day, 2 * day + M, 2 * day)], crit)
    s = got[tr.NOT_CHARGED]
    assert (s.episodes, s.detected, s.missed, s.false_alerts) == (1, 1, [], 0)


def test_comms_loss_needs_the_threshold_and_a_gap_within_the_tags_cadence_is_borderline() -> None:
    crit = {tr.COMMS_LOSS: CRITERIA[tr.COMMS_LOSS]}
    long = tr.Episode(0, 180 * M, tr.COMMS_LOSS, 1)
    near = tr.Episode(300 * M, 410 * M, tr.COMMS_LOSS, 2)  # 110 min: the tag's last upload
    # 40 min without coverage: a tag at rest uploaded an hour before it began, and once it
    # failed it retried after a 30-minute back-off, so the backend heard nothing for 2 h 10.
    rest = tr.Episode(700 * M, 740 * M, tr.COMMS_LOSS, 4)
    short = tr.Episode(500 * M, 520 * M, tr.COMMS_LOSS, 3)  # 20 min: no cadence explains 2 h
    truth = _truth(long, near, short, rest)
    alerts = [
        Alert(tr.COMMS_LOSS, 1, 0, 122 * M, 180 * M),
        Alert(tr.COMMS_LOSS, 2, 292 * M, 413 * M, 410 * M),
        Alert(tr.COMMS_LOSS, 3, 500 * M, 621 * M, 560 * M),
        Alert(tr.COMMS_LOSS, 4, 640 * M, 761 * M, 770 * M, cleared=True),
    ]
    s = score_alerts(truth, alerts, crit)[tr.COMMS_LOSS]
    assert (s.episodes, s.detected, s.latencies_ms) == (1, 1, [2 * M])
    assert (s.borderline, s.excused_alerts, s.false_alerts) == (2, 2, 1)


def test_every_alert_type_the_rules_raise_for_a_truth_type_has_a_criterion() -> None:
    from sim.score import RULE_TO_TRUTH

    assert set(RULE_TO_TRUTH.values()) <= set(CRITERIA)


def test_a_comms_loss_alert_cleared_by_the_backlog_still_counts_as_raised() -> None:
    # A 3-hour dead zone: the alert was raised at the threshold, then the backlog uploaded
    # when coverage returned showed the tag recording all along and cleared it
    # (docs/rules.md, comms). The officer was told in time: a detection, not a miss.
    truth = _truth(
        tr.Episode(0, 180 * M, tr.COMMS_LOSS, 1),
        tr.Episode(0, 60 * M, tr.CURFEW_BREACH, 2),
    )
    alerts = [
        Alert(tr.COMMS_LOSS, 1, 0, 121 * M, 181 * M, cleared=True),
        Alert(tr.COMMS_LOSS, 3, 0, 121 * M, 130 * M, cleared=True),  # no gap: a false one
        Alert(tr.CURFEW_BREACH, 2, 0, 11 * M, 60 * M, cleared=True),  # withdrawn: not scored
    ]
    s = score_alerts(truth, alerts)
    comms, curfew = s[tr.COMMS_LOSS], s[tr.CURFEW_BREACH]
    assert (comms.episodes, comms.detected, comms.latencies_ms, comms.missed) == (1, 1, [M], [])
    assert (comms.alerts, comms.false_alerts) == (2, 1)
    assert (curfew.episodes, curfew.detected, curfew.alerts, curfew.false_alerts) == (1, 0, 0, 0)


def test_the_alerts_table_gives_cleared_alerts_marked_with_the_span_they_were_shown() -> None:
    from sqlalchemy import create_engine, insert

    from backend.storage.schema import alerts, metadata
    from sim.score import TableAlertSource

    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    row = {
        "rule": "comms", "type": "comms_loss", "severity": "medium", "start": 1000,
        "episodes": 1, "late": False, "rule_version": 1, "raised_at": 8200.5, "reopened": 0,
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(alerts), [
            {**row, "subject_id": 7, "group_key": "7:a", "state": "open", "end": None,
             "updated_at": 8200.5},
            {**row, "subject_id": 8, "group_key": "8:a", "state": "cleared", "end": None,
             "late": True, "updated_at": 9000.25},
        ])  # fmt: skip
    got = sorted(TableAlertSource(engine, {7: 0, 8: 1}).alerts(), key=lambda a: a.subject)
    assert got == [
        Alert(tr.COMMS_LOSS, 0, 1_000_000, 8_200_500, None, "comms_loss", False),
        Alert(tr.COMMS_LOSS, 1, 1_000_000, 8_200_500, 9_000_250, "comms_loss", True),
    ]
