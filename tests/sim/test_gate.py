"""The alert gate's policy (sim/gate.py): failures per seed and over seeds, and seeds that
come from the last commit's date, not from a developer."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim import gate, scenario
from sim import truth as tr
from sim.cli import app
from sim.fleet import hil_subjects
from sim.generate import generate
from sim.score import Alert, score_alerts

M = 60_000
EVENING = str(Path(__file__).with_name("gate-evening.toml"))


def test_seeds_follow_the_date_and_nothing_else() -> None:
    a = gate.commit_seeds(3, date(2026, 12, 5))
    assert a == gate.commit_seeds(3, date(2026, 12, 5))
    assert len(set(a)) == 3 and all(0 <= s < 2**32 for s in a)
    assert set(a).isdisjoint(gate.commit_seeds(3, date(2026, 12, 6)))


def test_the_seeds_come_from_this_checkouts_last_commit() -> None:
    d = gate.commit_date()
    assert date(2024, 1, 1) <= d <= date(2100, 1, 1)
    assert gate.commit_seeds() == gate.commit_seeds(3, d)


def test_false_alerts_are_counted_over_all_seeds_together() -> None:
    truth = tr.TruthLog([tr.Episode(0, 60 * M, tr.CURFEW_BREACH, 1)], 0, 1440 * M)
    hit = Alert(tr.CURFEW_BREACH, 1, 0, 11 * M)
    stray = Alert(tr.STRAP_CUT, 2, 500 * M, 500 * M)
    clean = gate.SeedResult(1, 60.0, score_alerts(truth, [hit]), True)
    one_false = gate.SeedResult(2, 60.0, score_alerts(truth, [hit, stray]), True)
    # One false alert in 60 tag-days fails that seed alone, not 120 tag-days over two.
    assert any("false" in f for f in one_false.failures)
    assert gate.overall([clean, one_false]) == []
    two_false = gate.SeedResult(3, 60.0, score_alerts(truth, [hit, stray, stray]), True)
    assert any("false" in f for f in gate.overall([clean, two_false]))


def test_a_miss_a_late_alert_or_a_lost_position_fails_its_seed() -> None:
    truth = tr.TruthLog([tr.Episode(0, 60 * M, tr.CURFEW_BREACH, 1)], 0, 1440 * M)
    missed = gate.SeedResult(4, 500.0, score_alerts(truth, []), True)
    late = gate.SeedResult(
        5, 500.0, score_alerts(truth, [Alert(tr.CURFEW_BREACH, 1, 0, 30 * M)]), True
    )
    lost = gate.SeedResult(
        6, 500.0, score_alerts(truth, [Alert(tr.CURFEW_BREACH, 1, 0, 11 * M)]), False
    )
    got = gate.overall([missed, late, lost])
    assert any(f.startswith("seed 4: curfew_breach: missed") for f in got)
    assert any(f.startswith("seed 5: curfew_breach: late") for f in got)
    assert "seed 6: positions lost or doubled" in got
    assert gate.episodes_to_catch(truth, tr.CURFEW_BREACH) == 1


def test_the_week_has_every_type_to_catch_twice_beside_near_misses() -> None:
    # The seed the gate runs first today: what it is asked to catch, not what it caught.
    sc = scenario.load("gate-week")
    sim = generate(sc, gate.commit_seeds(1)[0])
    truth = sim.truth
    assert sc.population.subjects >= 100 and sc.days == 7
    assert sim.end_ms - sim.start_ms == (7 * 24 - 1) * 3_600_000  # the clocks go forward
    for kind in gate.MUST_DETECT:
        assert gate.episodes_to_catch(truth, kind) >= 2, kind
    near = (tr.CURFEW_BREACH, tr.EXCLUSION_ZONE_ENTRY, tr.FOIL_SHIELDING, tr.HOME_UNIT_UNPLUGGED)
    for kind in near:
        assert len(truth.of_type(kind)) > gate.episodes_to_catch(truth, kind), kind
    assert len(truth.of_type(tr.CELLULAR_OUTAGE)) >= 2
    # The HIL tags (10 %) have their home units tested: a curfew breach and an unplugging.
    hil = hil_subjects(sc.population.subjects, gate.hil_tags(sc.population.subjects))
    assert len(hil) == 12
    for kind in (tr.CURFEW_BREACH, tr.HOME_UNIT_UNPLUGGED):
        assert gate.episodes_to_catch(truth, kind, hil) >= 1, kind


@pytest.mark.broker
@pytest.mark.micropython
def test_the_gate_command_passes_an_evening_through_the_stack(tmp_path: Path) -> None:
    # The week's gate as CI does not run it (over an hour a seed), in miniature: the command, the
    # whole stack, a HIL tag whose home unit reports its wearer out and its own power cut;
    # two seeds side by side, each in a process with a stack of its own.
    out = tmp_path / "gate"
    got = CliRunner().invoke(
        app,
        ["gate", EVENING, "--seed", "5", "--seed", "6", "--jobs", "2", "--hil", "1",
         "--from-hour", "20", "--hours", "2", "--out", str(out)],
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    assert "seeds: 5, 6\n" in got.output and "gate passed over 2 seeds" in got.output
    for seed in (5, 6):
        # Each seed's own report, printed under its seed and written to its own folder.
        assert f"seed {seed}:\ngate-evening (seed {seed}): 2 tags (1 under MicroPython)" in (
            got.output
        )
        report = json.loads((out / f"seed-{seed}" / "report.json").read_text())
        assert report["seed"] == seed
        assert report["hil_tags"] == 1 and report["completeness"]["ok"]
        scores = report["alerts"]
        # Subject 0 (the HIL tag) alone went out and alone had its unit unplugged for longer
        # than the grace; subject 1's 3-minute unplugging is a near miss and raised nothing.
        for kind in ("curfew_breach", "home_unit_unplugged", "strap_cut"):
            assert (scores[kind]["episodes"], scores[kind]["detected"]) == (1, 1), scores[kind]
        assert sum(s["alerts"] for s in scores.values()) == 3, scores
        assert set(report["alerts"]) == set(gate.MUST_DETECT)  # every type in the report


def test_a_seed_given_twice_is_refused() -> None:
    got = CliRunner().invoke(app, ["gate", EVENING, "--seed", "5", "--seed", "5"])
    assert got.exit_code == 2
    assert "seed 5 given more than once" in got.output
