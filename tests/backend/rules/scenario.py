"""Building blocks for rule scenarios: a subject with a tag and a home unit near
Bournemouth, observations as the devices would report them, and frames grouping them as a
device would send them (for the arrival-order property)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from backend.rules.config import Assignment, SubjectConfig
from backend.rules.geo import M_PER_DEG_LAT, ZoneSpec
from backend.rules.model import HOME_UNIT, SECURITY, TAG, Obs
from backend.rules.schedule import Weekly

SUBJECT = 1
TAG_ID = 1001
UNIT_ID = 5001
HOME_LAT, HOME_LON = 50.7192, -1.8808
LONDON = ZoneInfo("Europe/London")
EVERY_NIGHT = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def local(text: str) -> int:
    """Unix time of a local Europe/London wall-clock time 'YYYY-MM-DD HH:MM'."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=LONDON).timestamp())


def offset(
    dx_m: float, dy_m: float, lat: float = HOME_LAT, lon: float = HOME_LON
) -> tuple[float, float]:
    return (
        lat + dy_m / M_PER_DEG_LAT,
        lon + dx_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


def circle(
    zone_id: int, kind: str, dx_m: float, dy_m: float, radius_m: float, **kw: object
) -> ZoneSpec:
    lat, lon = offset(dx_m, dy_m)
    return ZoneSpec(
        zone_id,
        kind,
        "circle",
        {"type": "Point", "coordinates": [lon, lat]},
        radius_m=radius_m,
        **kw,
    )  # type: ignore[arg-type]


def config(**kw: object) -> SubjectConfig:
    base: dict[str, object] = {
        "subject": SUBJECT,
        "assignments": [Assignment(TAG_ID, TAG, 0), Assignment(UNIT_ID, HOME_UNIT, 0)],
    }
    base.update(kw)
    return SubjectConfig(**base)  # type: ignore[arg-type]


def home_zone(radius_m: float = 60) -> ZoneSpec:
    return circle(1, "home", 0, 0, radius_m)


def curfew(start: str = "19:00", end: str = "07:00", days: tuple[str, ...] = EVERY_NIGHT) -> Weekly:
    return Weekly(days, start, end)


@dataclass
class Builder:
    """Observations with refs as the devices would number them."""

    seq: dict[int, int] = field(default_factory=dict)
    obs: list[Obs] = field(default_factory=list)

    def _ref(self, device: int) -> str:
        self.seq[device] = self.seq.get(device, 0) + 1
        return f"{device}/1/{self.seq[device]}/0"

    def add(
        self, t: int, device: int, role: str, name: str, detail: str = "", **values: int
    ) -> Obs:
        o = Obs(t, device, role, name, self._ref(device), values, detail)
        self.obs.append(o)
        return o

    def fix(
        self, t: int, dx_m: float = 0, dy_m: float = 0, acc_m: float = 5, source: int = 0
    ) -> Obs:
        lat, lon = offset(dx_m, dy_m)
        return self.add(
            t,
            TAG_ID,
            TAG,
            "fix",
            lat_e7=round(lat * 1e7),
            lon_e7=round(lon * 1e7),
            acc_dm=round(acc_m * 10),
            fix_type=2,
            source=source,
            sats=9,
        )

    def presence(self, t: int, state: int) -> Obs:
        return self.add(
            t, UNIT_ID, HOME_UNIT, "presence", home_unit=UNIT_ID, tag=TAG_ID, state=state, rssi=-60
        )

    def tamper(self, t: int, sensor: int, state: int) -> Obs:
        return self.add(t, TAG_ID, TAG, "tamper", sensor=sensor, state=state)

    def battery(self, t: int, level: int, flags: int = 0) -> Obs:
        return self.add(t, TAG_ID, TAG, "battery", level=level, flags=flags, mv=3700)

    def status(self, t: int, device: int = TAG_ID) -> Obs:
        role = TAG if device == TAG_ID else HOME_UNIT
        return self.add(t, device, role, "status", fw_version=1, buf_used=0, buf_free=100)

    def link(self, t: int, state: int) -> Obs:
        return self.add(t, UNIT_ID, HOME_UNIT, "link", state=state)

    def power(self, t: int, mains: int) -> Obs:
        return self.add(t, UNIT_ID, HOME_UNIT, "home_power", mains=mains, battery=90)

    def security(self, t: int, reason: str) -> Obs:
        return self.add(t, TAG_ID, TAG, SECURITY, detail=f"{reason}:refused")


def types(episodes: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(e.type for e in episodes)
