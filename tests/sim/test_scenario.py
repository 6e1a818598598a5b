"""Scenario files: the shipped ones load; bad ones get an error naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim import nmea, scenario


def _base() -> dict[str, Any]:
    return {"name": "t", "start": "2025-06-09", "population": {"subjects": 3}}


def test_shipped_scenarios_load() -> None:
    names = scenario.known()
    assert {"dorset-iom-50", "edge-cases", "fleet-10k"} <= set(names)
    sc = scenario.load("dorset-iom-50")
    assert sc.population.subjects == 50 and sc.timezone == "Europe/London"
    assert scenario.load("fleet-10k").population.subjects == 10_000
    types = {e.type for e in scenario.load("edge-cases").events}
    assert types == set(scenario.EVENT_TYPES)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda d: d["population"].update(subjects=0), "population.subjects", "greater than"),
        (lambda d: d["population"].update(subjectz=5), "population.subjectz", "Extra inputs"),
        (
            lambda d: d["population"].update(profiles={"angelic": 1.0}),
            "population.profiles",
            "unknown profile 'angelic'",
        ),
        (
            lambda d: d["population"].update(profiles={"compliant": 0.0}),
            "population.profiles",
            "profile shares must add up to more than 0",
        ),
        (lambda d: d.update(receivers={"garmin": 1.0}), "receivers", "unknown receiver 'garmin'"),
        (
            lambda d: d.update(receivers={next(iter(nmea.PROFILES)): -1.0}),
            "receivers",
            "must not be negative",
        ),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone", "unknown time zone"),
        (lambda d: d.update(start="2025-13-01"), "start", "date"),
        (
            lambda d: d.update(events=[{"type": "strap_cut", "subject": 0}]),
            "events[0]",
            "needs 'at'",
        ),
        (
            lambda d: d.update(events=[{"type": "case_open", "at": "25:00", "minutes": 1}]),
            "events[0].at",
            "pattern",
        ),
        (
            lambda d: d.update(events=[{"type": "teleport", "at": "10:00"}]),
            "events[0].type",
            "Input should be",
        ),
        (
            lambda d: d.update(events=[{"type": "strap_cut", "subject": 3, "at": "10:00"}]),
            "events[0].subject",
            "3 but the population has 3",
        ),
        (
            lambda d: d.update(
                events=[{"type": "exclusion_zone_entry", "at": "10:00", "minutes": 5, "zone": "x"}]
            ),
            "events[0].zone",
            "unknown zone 'x'",
        ),
        (
            lambda d: d.update(events=[{"type": "zone_edge_linger", "at": "10:00", "minutes": 5}]),
            "events[0]",
            "'metres' (outside the zone's edge) goes with zone_edge_linger only",
        ),
        (
            lambda d: d.update(
                events=[{"type": "case_open", "at": "10:00", "minutes": 5, "metres": 20}]
            ),
            "events[0]",
            "goes with zone_edge_linger only",
        ),
        (
            lambda d: d.update(
                events=[{"type": "zone_edge_linger", "at": "10:00", "minutes": 5, "metres": 0}]
            ),
            "events[0].metres",
            "greater than 0",
        ),
    ],
)
def test_bad_scenarios_name_the_field(change: Any, field: str, words: str) -> None:
    d = _base()
    change(d)
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.parse(d, "bad.toml")
    msg = str(err.value)
    assert msg.startswith("bad.toml: ")
    assert field in msg, msg
    assert words in msg, msg


def test_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "broken.toml"
    p.write_text('name = "x"\nstart = \n', encoding="utf-8")
    with pytest.raises(scenario.ScenarioError, match=r"broken\.toml: not valid TOML"):
        scenario.load(p)
    with pytest.raises(scenario.ScenarioError, match=r"no scenario 'nowhere'.*dorset-iom-50"):
        scenario.load("nowhere")
    p.write_text('name = "x"\nstart = 2025-06-09\n', encoding="utf-8")
    with pytest.raises(scenario.ScenarioError, match=r"population: Field required"):
        scenario.load(p)
