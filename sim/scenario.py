"""Scenario files (TOML in sim/scenarios/): loading and validation.

A bad file gets a `ScenarioError` naming the file and the field (`population.subjects: Input
should be greater than 0`), never a traceback from deep inside the generator.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sim import clock, nmea
from sim.geo import TOWN_CENTRES

SCENARIO_DIR = Path(__file__).parent / "scenarios"

TOWN_CENTRES_NAMES = tuple(TOWN_CENTRES)
PROFILES = ("compliant", "sometimes_late", "persistent_breacher")

# Injected events a scenario can ask for. The truth log records what then really happened
# (sim.truth), which for the movement events is derived from the movements themselves.
EVENT_TYPES = (
    "curfew_breach",  # late return by `minutes` (or a night out with `at`)
    "exclusion_zone_entry",  # a trip into `zone` at `at`, dwelling `minutes`
    "zone_edge_linger",  # standing `metres` outside `zone`'s edge from `at` for `minutes`
    "strap_cut",  # at `at`; refitted after `minutes` (else never in the run)
    "case_open",  # at `at` for `minutes`
    "foil_shielding",  # at `at` for `minutes`: no GNSS reaches the tag
    "not_charging",  # from `day` on, the person stops charging the tag
    "flat_battery",  # not charging from `day`, starting the day low: runs flat that day
    "home_unit_unplugged",  # at `at` for `minutes`
    "cellular_outage",  # area-wide, at `at` for `minutes` (subject ignored)
)


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


def _shares(v: dict[str, float], known: Iterable[str], what: str) -> dict[str, float]:
    """Shares of a mix (profiles of people, makes of receiver): known names, none negative,
    some positive."""
    names = list(known)
    for k, share in v.items():
        if k not in names:
            raise ValueError(f"unknown {what} {k!r} (known: {', '.join(names)})")
        if share < 0:
            raise ValueError(f"share of {k!r} must not be negative")
    if sum(v.values()) <= 0:
        raise ValueError(f"{what} shares must add up to more than 0")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class Curfew(_Model):
    start: HHMM = "19:00"
    end: HHMM = "07:00"


class WorldConfig(_Model):
    workplaces: Annotated[int, Field(ge=1, le=5000)] = 60
    shops: Annotated[int, Field(ge=1, le=5000)] = 80
    social: Annotated[int, Field(ge=1, le=20000)] = 150
    victims: Annotated[int, Field(ge=0, le=1000)] = 5
    dead_zones: Annotated[int, Field(ge=0, le=50)] = 3
    extra_homes: Annotated[int, Field(ge=0, le=100000)] = 0


class Population(_Model):
    subjects: Annotated[int, Field(ge=1, le=100_000)]
    profiles: dict[str, float] = Field(
        default_factory=lambda: {
            "compliant": 0.6,
            "sometimes_late": 0.3,
            "persistent_breacher": 0.1,
        }
    )
    curfew: Curfew = Curfew()
    exclusion_zones: Annotated[int, Field(ge=0, le=len(TOWN_CENTRES_NAMES))] = 1
    victim_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    initial_battery: tuple[float, float] = (0.6, 1.0)
    random_events: bool = True

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, v: dict[str, float]) -> dict[str, float]:
        return _shares(v, PROFILES, "profile")

    @field_validator("initial_battery")
    @classmethod
    def _battery(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError("must be [low, high] with 0 <= low <= high <= 1")
        return v


class Event(_Model):
    type: Literal[
        "curfew_breach",
        "exclusion_zone_entry",
        "zone_edge_linger",
        "strap_cut",
        "case_open",
        "foil_shielding",
        "not_charging",
        "flat_battery",
        "home_unit_unplugged",
        "cellular_outage",
    ]
    subject: Annotated[int, Field(ge=0)] = 0
    day: Annotated[int, Field(ge=0)] = 0
    at: HHMM | None = None
    minutes: Annotated[float | None, Field(gt=0, le=7 * 24 * 60)] = None
    zone: str | None = None
    metres: Annotated[float | None, Field(gt=0, le=2000)] = None  # zone_edge_linger

    @model_validator(mode="after")
    def _needs(self) -> Event:
        needs_at = {
            "exclusion_zone_entry",
            "zone_edge_linger",
            "strap_cut",
            "case_open",
            "foil_shielding",
            "home_unit_unplugged",
            "cellular_outage",
        }
        if self.type in needs_at and self.at is None:
            raise ValueError(f"{self.type} needs 'at' (local HH:MM)")
        needs_minutes = needs_at - {"strap_cut"}
        if self.type in needs_minutes and self.minutes is None:
            raise ValueError(f"{self.type} needs 'minutes'")
        if self.type == "curfew_breach" and self.minutes is None:
            raise ValueError("curfew_breach needs 'minutes' (how late, or how long out)")
        if (self.type == "zone_edge_linger") != (self.metres is not None):
            raise ValueError("'metres' (outside the zone's edge) goes with zone_edge_linger only")
        return self


class Scenario(_Model):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    start: date
    timezone: str = clock.DEFAULT_TZ
    days: Annotated[int, Field(ge=1, le=366)] = 1
    world: WorldConfig = WorldConfig()
    population: Population
    # GNSS receiver profiles of the tags (sim.nmea.PROFILES) and their shares of the fleet.
    receivers: dict[str, float] = Field(default_factory=lambda: {nmea.DEFAULT_PROFILE: 1.0})
    events: list[Event] = Field(default_factory=list)

    @field_validator("receivers")
    @classmethod
    def _receivers(cls, v: dict[str, float]) -> dict[str, float]:
        return _shares(v, nmea.PROFILES, "receiver")

    def receiver(self, seed: int, i: int) -> str:
        """Subject i's receiver profile, drawn by the shares (the same for a seed)."""
        names = sorted(self.receivers)
        rnd = random.Random(seed * 1_000_003 + i)
        return rnd.choices(names, [self.receivers[n] for n in names])[0]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        clock.zone(v)
        return v

    @model_validator(mode="after")
    def _cross(self) -> Scenario:
        for i, e in enumerate(self.events):
            if e.subject >= self.population.subjects:
                raise ValueError(
                    f"events[{i}].subject: {e.subject} but the population has "
                    f"{self.population.subjects} subjects (0-based)"
                )
            if (
                e.zone is not None
                and e.zone not in TOWN_CENTRES_NAMES
                and not e.zone.startswith("victim")
            ):
                raise ValueError(
                    f"events[{i}].zone: unknown zone {e.zone!r} "
                    f"(town centres: {', '.join(TOWN_CENTRES_NAMES)}, or 'victim')"
                )
        return self


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def parse(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p not in ("function-after",))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {_loc(loc)}: {msg}" if loc else f"{source}: {msg}")
        raise ScenarioError("\n".join(lines)) from None


def load(name_or_path: str | Path) -> Scenario:
    """Load a scenario by file path, or by name from sim/scenarios/ (`dorset-iom-50`)."""
    path = Path(name_or_path)
    if not path.exists():
        candidate = SCENARIO_DIR / f"{name_or_path}.toml"
        if candidate.exists():
            path = candidate
        else:
            known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
            raise ScenarioError(f"no scenario {str(name_or_path)!r} (known: {known})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse(data, str(path))


def known() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
