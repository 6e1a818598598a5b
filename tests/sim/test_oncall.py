"""A night on call through the whole stack (sim/oncall.py): the strap cut in
sim/scenarios/night-strap-cut.toml pages the first on-call officer by e-mail and push within
a minute of the alert; nobody acknowledging escalates to the second officer, who does. The
night runs on the simulator's clock: about ten seconds of wall time."""

from __future__ import annotations

import pytest

from sim import scenario as scn
from sim.fleet import Fleet, RunOptions
from sim.oncall import OfficerSpec, OnCall


@pytest.mark.broker
def test_a_night_strap_cut_pages_within_a_minute_and_escalates_when_unanswered() -> None:
    sc = scn.load("night-strap-cut")
    # 00:00-00:36 and a short drain: the cut at 00:20, the escalation 5 minutes after.
    fleet = Fleet(sc, RunOptions(subjects=1, hours=0.6, drain_s=60))
    fleet.setup()
    oncall = OnCall(
        fleet, [OfficerSpec("asleep", None), OfficerSpec("awake", 120.0)], escalate_after_s=300
    )
    try:
        fleet.run()
        report = oncall.score()
    finally:
        oncall.close()
        fleet.close()
    (alert,) = [a for a in report["alerts"] if a["type"] == "strap_tamper"]
    # In lock-step the page goes out in the slice that raised the alert (5 s slices); the
    # done-when bound is a minute.
    assert alert["first_email_s"] is not None and alert["first_email_s"] <= 5, report
    assert alert["first_push_s"] is not None and alert["first_push_s"] <= 5, report
    # The first officer never answered: five minutes on, the second was paged, read it and
    # acknowledged two minutes later (within a slice of the simulator: 5 s).
    assert alert["escalations"] == 1 and alert["acknowledged_by"] == "awake", report
    assert 300 + 120 <= alert["acknowledged_s"] - alert["first_notification_s"] <= 300 + 125
    assert report["late_slices"] == 0
    asleep, awake = oncall.officers
    assert len(oncall.mailbox.to(asleep.email)) == 1 and len(oncall.mailbox.to(awake.email)) == 1
    assert asleep.acked == {} and len(awake.acked) == 1
    assert oncall.push_service.refused == []
    assert report["time_to_first_notification_s"]["max"] <= 60


def test_officers_are_given_in_rank_order_with_their_delay() -> None:
    from sim.oncall import parse_officers

    assert [(o.name, o.ack_after_s) for o in parse_officers("never, 120,0")] == [
        ("officer1", None),
        ("officer2", 120.0),
        ("officer3", 0.0),
    ]
    for bad in ("", "soon", "-5", "1e9", ",".join(["1"] * 10)):
        with pytest.raises(ValueError):
            parse_officers(bad)
