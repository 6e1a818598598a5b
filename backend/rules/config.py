"""A subject's monitoring configuration as the rules read it: what equipment they wear,
their curfews, zones, charging schedule and per-order thresholds. The sink builds it from
the domain tables (backend/storage/schema.py); tests build it directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from backend.rules.geo import (
    EXCLUSION,
    HOME,
    INCLUSION,
    Projection,
    ZoneIndex,
    ZoneSpec,
    home_point,
)
from backend.rules.model import HOME_UNIT, TAG, Obs
from backend.rules.schedule import DEFAULT_TZ, Exception_, Weekly


@dataclass(frozen=True)
class Assignment:
    """Device `device` served subject in `role` over [start, end) (end None = still)."""

    device: int
    role: str
    start: int
    end: int | None = None

    def covers(self, t: int) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True)
class VictimLink:
    """A victim's device linked to the subject's order over [start, end): the proximity
    rule's warning and alert distances, and how long it may be silent (None: the rule's
    default)."""

    device: int
    warn_m: float = 500.0
    alert_m: float = 200.0
    start: int = 0
    end: int | None = None
    silent_s: int | None = None


@dataclass
class SubjectConfig:
    subject: int
    assignments: list[Assignment] = field(default_factory=list)
    tz: str = DEFAULT_TZ
    curfews: list[Weekly] = field(default_factory=list)
    curfew_grace_s: int | None = None
    exceptions: list[Exception_] = field(default_factory=list)
    zones: list[ZoneSpec] = field(default_factory=list)
    victims: list[VictimLink] = field(default_factory=list)  # with VICTIM assignments
    charge_min_minutes: int | None = None  # None: no charging schedule
    comms_loss_s: int | None = None  # per-order threshold (None: the rule's default)
    # Monitoring runs over [start, end) (the orders' span); nothing alerts outside it.
    start: int | None = None
    end: int | None = None
    version: int = 0  # bumped when any of it changes (invalidates rule state)

    def role_of(self, device: int, t: int) -> str | None:
        for a in self.assignments:
            if a.device == device and a.covers(t):
                return a.role
        return None

    def devices(self, role: str) -> set[int]:
        return {a.device for a in self.assignments if a.role == role}

    @property
    def tags(self) -> set[int]:
        return self.devices(TAG)

    @property
    def home_units(self) -> set[int]:
        return self.devices(HOME_UNIT)

    def presence(self, obs: Obs) -> bool | None:
        """What a home unit's presence report says of one of the subject's tags: True home
        (the unit hears it), False away; None for any other observation or another tag."""
        if obs.name != "presence" or obs.role != HOME_UNIT or obs.v("tag") not in self.tags:
            return None
        return bool(obs.v("state") == 1)

    @property
    def fitted(self) -> int | None:
        """When the subject's first tag was fitted (None: never). Nothing before it alerts:
        a subject is not monitored before it wears a tag, whatever an order says."""
        return min((a.start for a in self.assignments if a.role == TAG), default=None)

    def monitored(self, t: int) -> bool:
        fitted = self.fitted
        return (
            fitted is not None
            and t >= fitted
            and (self.start is None or t >= self.start)
            and (self.end is None or t < self.end)
        )

    def evaluation_start(self, earliest: int) -> int:
        """Where an evaluation from scratch starts, given the earliest data: that or the
        orders' start if sooner, but never before the first tag was fitted (an order
        backdated years once walked every day since, raising an alert for each)."""
        t0 = earliest if self.start is None else min(earliest, self.start)
        fitted = self.fitted
        return t0 if fitted is None else max(t0, fitted)

    @cached_property
    def projection(self) -> Projection:
        for z in self.zones:
            lat, lon = z.anchor()
            return Projection(lat, lon)
        return Projection(50.72, -1.88)  # unused without zones

    @cached_property
    def zone_index(self) -> ZoneIndex:
        return ZoneIndex.build(
            [z for z in self.zones if z.kind in (INCLUSION, EXCLUSION)], self.projection
        )

    @cached_property
    def home_index(self) -> ZoneIndex:
        return ZoneIndex.build([z for z in self.zones if z.kind == HOME], self.projection)

    @cached_property
    def homes(self) -> tuple[tuple[float, float], ...]:
        """(lat, lon) of each home zone's point (geo.home_point), where its home unit is taken
        to be; a zone whose geometry gives none is left out."""
        points = [home_point(z.shape, z.geometry) for z in self.zones if z.kind == HOME]
        return tuple((p[1], p[0]) for p in points if p is not None)
