"""Pydantic v2 models of the monitoring API (the subject, order, assignment, curfew, zone,
charging and alert routes in backend/api/routes/): Create, Update and Public variants.
Times are Unix seconds; zones and trails are GeoJSON."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import shapely
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend import bounds
from backend.bounds import Position
from backend.rules.geo import ZoneSpec
from backend.rules.schedule import Weekly, parse_hhmm, zone
from backend.services.errors import Invalid

# A date of an order, assignment or exception: also within ten years of backend now, which
# the route checks (Dated.check; the model does not know the clock).
Unix = Annotated[int, Field(ge=0, lt=bounds.LATEST_S, description="Unix seconds")]
OrderKind = Literal["licence", "voluntary", "bail", "domestic_abuse"]
Role = Literal["tag", "home_unit"]
ZoneKind = Literal["inclusion", "exclusion", "home"]
AlertState = Literal["open", "acknowledged", "resolved", "cleared"]
Outcome = Literal["breach_confirmed", "false_alert", "technical_fault", "authorised_absence"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Strict(BaseModel):
    """A request body: unknown fields refused, and no coercion (JSON `true` is not 1, "12"
    is not 12, 1.5e9 is not an integer)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional(**constraints: Any) -> Any:
    """A field of an update body that may be left out, and is then left unchanged (updates
    take `model_dump(exclude_unset=True)`), but may not be sent as null: a field that may
    be cleared is typed `X | None` instead."""
    return Field(default=None, json_schema_extra=_no_default, **constraints)


class Dated(Strict):
    """A body with record dates (`dated` fields), each plausible only within ten years of
    backend now (bounds.RECORD_PAST_S/AHEAD_S)."""

    dated: ClassVar[tuple[str, ...]] = ()

    def check(self, now: float) -> None:
        """Refuse (422) a date that is not plausible at backend time `now`, saying which."""
        for name in self.dated:
            t = getattr(self, name)
            problem = None if t is None else bounds.record_time_problem(name, t, now)
            if problem:
                raise Invalid(problem)


def _check_tz(tz: str) -> str:
    try:
        zone(tz)
    except Exception as e:
        raise ValueError(f"unknown IANA time zone {tz!r}") from e
    return tz


def _check_hhmm(v: str) -> str:
    parse_hhmm(v)
    return v


# A local time of day: ASCII digits only (full-width or other Unicode digits were stored as
# typed and read back as another time by whatever parses them next).
HhMm = Annotated[
    str,
    Field(pattern=r"^[0-9]{2}:[0-9]{2}$", description="local HH:MM"),
    AfterValidator(_check_hhmm),
]


# ---- subjects ---------------------------------------------------------------------------


class SubjectCreate(Strict):
    reference: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    risk_notes: str = Field(default="", max_length=10_000)
    tz: str = Field(default="Europe/London", max_length=64, description="IANA time zone")

    _tz = field_validator("tz")(_check_tz)


class SubjectUpdate(Strict):
    """Only the fields sent change."""

    name: str = optional(min_length=1, max_length=200)
    risk_notes: str = optional(max_length=10_000, description='"" for none')
    tz: str = optional(max_length=64, description="IANA time zone")

    _tz = field_validator("tz")(_check_tz)


# ---- orders -----------------------------------------------------------------------------


class OrderCreate(Dated):
    dated = ("starts_at", "ends_at")
    kind: OrderKind
    reference: str = Field(min_length=1, max_length=64)
    starts_at: Unix
    ends_at: Unix | None = None
    comms_loss_s: int | None = Field(
        default=None, ge=60, le=7 * 86400, description="no-data alert threshold for this order"
    )
    curfew_grace_s: int | None = Field(default=None, ge=0, le=6 * 3600)
    conditions: str = Field(default="", max_length=10_000)

    @model_validator(mode="after")
    def _span(self) -> OrderCreate:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class OrderUpdate(Dated):
    """Only the fields sent change; `null` clears ends_at and the thresholds (back to the
    defaults), never the conditions (send "" for none)."""

    dated = ("ends_at",)
    ends_at: Unix | None = None
    comms_loss_s: int | None = Field(default=None, ge=60, le=7 * 86400)
    curfew_grace_s: int | None = Field(default=None, ge=0, le=6 * 3600)
    conditions: str = optional(max_length=10_000)


class OrderPublic(BaseModel):
    id: int
    subject_id: int
    kind: str
    reference: str
    starts_at: int
    ends_at: int | None
    comms_loss_s: int | None
    curfew_grace_s: int | None
    conditions: str
    created_at: float


# ---- equipment assignments ------------------------------------------------------------------


class AssignmentCreate(Dated):
    dated = ("starts_at",)
    device: int = Field(ge=1, le=0xFFFFFFFF, description="a registered tag or home unit")
    role: Role
    starts_at: Unix


class AssignmentUpdate(Dated):
    dated = ("ends_at",)
    ends_at: Unix


class AssignmentPublic(BaseModel):
    id: int
    subject_id: int
    device: int
    role: str
    starts_at: int
    ends_at: int | None
    created_at: float


# ---- curfews ----------------------------------------------------------------------------


class CurfewCreate(Strict):
    days: list[Day] = Field(min_length=1, max_length=7, description="days a window starts on")
    start: HhMm
    end: HhMm = Field(description="local HH:MM; <= start: next day")
    tz: str = Field(default="Europe/London", max_length=64)

    _tz = field_validator("tz")(_check_tz)


class CurfewPublic(BaseModel):
    id: int
    subject_id: int
    days: list[str]
    start: str
    end: str
    tz: str
    created_at: float


class ExceptionCreate(Dated):
    dated = ("starts_at", "ends_at")
    kind: Literal["excused", "extra"] = Field(
        description="excused: authorised absence (no curfew); extra: additional curfew"
    )
    starts_at: Unix
    ends_at: Unix
    reason: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _span(self) -> ExceptionCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > bounds.EXCEPTION_MAX_S:
            days = bounds.EXCEPTION_MAX_S // bounds.DAY_S
            raise ValueError(f"an exception spans at most {days} days")
        return self


class ExceptionPublic(BaseModel):
    id: int
    subject_id: int
    kind: str
    starts_at: int
    ends_at: int
    reason: str
    created_at: float


# ---- zones (GeoJSON) --------------------------------------------------------------------


class ScheduleWindow(Strict):
    days: list[Day] = Field(min_length=1, max_length=7)
    start: HhMm
    end: HhMm
    tz: str = Field(default="Europe/London", max_length=64)

    _tz = field_validator("tz")(_check_tz)


class ZoneProperties(Strict):
    name: str = Field(min_length=1, max_length=100)
    kind: ZoneKind
    radius_m: float = Field(default=0, ge=0, le=100_000, description="circle (Point) radius")
    width_m: float = Field(default=0, ge=0, le=10_000, description="corridor (LineString) width")
    buffer_m: float = Field(default=0, ge=0, le=10_000, description="grows the zone")
    victim: bool = Field(default=False, description="a victim's-address zone")
    schedule: list[ScheduleWindow] = Field(default_factory=list, max_length=14)
    dwell_s: int | None = Field(default=None, ge=0, le=86_400)


def _closed(ring: list[list[float]]) -> list[list[float]]:
    if ring[0][:2] != ring[-1][:2]:
        raise ValueError("a linear ring must end where it starts")
    return ring


Ring = Annotated[
    list[Position],
    Field(min_length=4, max_length=bounds.MAX_ZONE_VERTICES),
    AfterValidator(_closed),
]


class PointGeometry(Strict):
    type: Literal["Point"]
    coordinates: Position = Field(description="the circle's centre, [lon, lat]")


class LineStringGeometry(Strict):
    type: Literal["LineString"]
    coordinates: list[Position] = Field(
        min_length=2, max_length=bounds.MAX_ZONE_VERTICES, description="the corridor's path"
    )


class PolygonGeometry(Strict):
    type: Literal["Polygon"]
    coordinates: list[Ring] = Field(
        min_length=1, max_length=bounds.MAX_ZONE_RINGS, description="outline, then holes"
    )

    @model_validator(mode="after")
    def _size(self) -> PolygonGeometry:
        if sum(len(r) for r in self.coordinates) > bounds.MAX_ZONE_VERTICES:
            raise ValueError(f"a zone has at most {bounds.MAX_ZONE_VERTICES} vertices")
        return self


Geometry = Annotated[
    PointGeometry | LineStringGeometry | PolygonGeometry, Field(discriminator="type")
]


class ZoneFeatureCreate(Strict):
    """A GeoJSON Feature: Point (circle, radius_m), Polygon, or LineString (corridor)."""

    type: Literal["Feature"] = "Feature"
    geometry: Geometry
    properties: ZoneProperties

    @model_validator(mode="after")
    def _valid(self) -> ZoneFeatureCreate:
        spec = self.to_spec(0)
        try:
            spec.to_metres(_projection_for(spec))  # shape checks (self-intersection)
        except shapely.errors.GEOSException as e:
            raise ValueError("the geometry cannot be built (degenerate)") from e
        return self

    def shape(self) -> str:
        return {"Point": "circle", "Polygon": "polygon", "LineString": "corridor"}[
            self.geometry.type
        ]

    def stored(self) -> dict[str, Any]:
        """The zone as its row stores it (services/zones.py)."""
        p = self.properties
        return {
            "name": p.name,
            "kind": p.kind,
            "shape": self.shape(),
            "geometry": self.geometry.model_dump(),
            "radius_m": p.radius_m,
            "width_m": p.width_m,
            "buffer_m": p.buffer_m,
            "victim": p.victim,
            "schedule": [w.model_dump() for w in p.schedule],
            "dwell_s": p.dwell_s,
        }

    def to_spec(self, zone_id: int) -> ZoneSpec:
        p = self.properties
        try:
            return ZoneSpec(
                zone_id,
                p.kind,
                self.shape(),
                self.geometry.model_dump(),
                p.radius_m,
                p.width_m,
                p.buffer_m,
                tuple(Weekly(tuple(w.days), w.start, w.end, w.tz) for w in p.schedule),
                p.dwell_s,
                p.name,
            )
        except (ValueError, TypeError, IndexError, KeyError) as e:
            raise ValueError(str(e) or "bad geometry") from e


def _projection_for(spec: ZoneSpec) -> Any:
    from backend.rules.geo import Projection

    try:
        lat, lon = spec.anchor()
    except (TypeError, IndexError, ValueError) as e:
        raise ValueError("bad coordinates") from e
    return Projection(lat, lon)


class ZoneUpdate(Strict):
    """Only the fields sent change; `null` clears the schedule (always active) and the
    dwell (the rule's default), never the name."""

    name: str = optional(min_length=1, max_length=100)
    dwell_s: int | None = Field(default=None, ge=0, le=86_400)
    schedule: list[ScheduleWindow] | None = Field(default=None, max_length=14)

    def changes(self) -> dict[str, Any]:
        """The fields sent, as the zone's row stores them."""
        values = self.model_dump(exclude_unset=True)
        if "schedule" in values:
            values["schedule"] = [w.model_dump() for w in self.schedule or []]
        return values


class ZoneFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: int
    geometry: dict[str, Any]
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[dict[str, Any]]


def zone_feature(r: Any) -> dict[str, Any]:
    """A zones row as the GeoJSON Feature the API answers (the zone routes and the live
    map)."""
    return ZoneFeature(
        id=r.id,
        geometry=r.geometry,
        properties={
            "name": r.name,
            "kind": r.kind,
            "shape": r.shape,
            "radius_m": r.radius_m,
            "width_m": r.width_m,
            "buffer_m": r.buffer_m,
            "victim": r.victim,
            "schedule": r.schedule,
            "dwell_s": r.dwell_s,
            "subject_id": r.subject_id,
            "created_at": r.created_at,
        },
    ).model_dump()


# ---- zone preview -----------------------------------------------------------------------


class ZonePreviewRequest(Strict):
    zone: ZoneFeatureCreate
    start: int | None = Field(
        default=None, ge=0, lt=bounds.LATEST_S, description="Unix s; default end-24h"
    )
    end: int | None = Field(
        default=None, ge=0, lt=bounds.LATEST_S, description="Unix s; default now"
    )


class PreviewFix(BaseModel):
    t: int
    lat: float
    lon: float
    accuracy_m: float
    distance_m: float = Field(description="signed distance to the zone's edge; < 0 inside")
    breach: bool = Field(
        description="a breach sample: the zone rule judged the fix on the wrong side of the edge "
        "with confidence (inside an exclusion zone, outside an inclusion zone, beyond the "
        "accuracy margin) while the zone's schedule applies"
    )
    scheduled: bool = Field(description="the zone's schedule is active at this time")


class PreviewEpisode(BaseModel):
    start: int = Field(description="the crossing, interpolated between fixes")
    end: int = Field(description="the crossing back, or (ongoing) the last fix counted")
    fixes: int = Field(description="breach samples within it")
    would_alert: bool = Field(
        description="the zone rule raises it; false: a visit the rule let go (too short, too "
        "few fixes, not supported by the track)"
    )
    pass_through: bool = Field(
        default=False, description="a crossing between two fixes outside the zone"
    )
    ongoing: bool = Field(default=False, description="still going at the window's end")


class ZonePreviewResult(BaseModel):
    checked: int = Field(description="fixes in the window the zone rule can use")
    dwell_s: int
    fixes: list[PreviewFix] = Field(description="breach samples and fixes in the edge band")
    episodes: list[PreviewEpisode]


# ---- charging -------------------------------------------------------------------------


class ChargingSet(Strict):
    min_minutes: int = Field(ge=1, le=24 * 60, description="charge at least this long a day")


class ChargingPublic(BaseModel):
    subject_id: int
    min_minutes: int | None


# ---- alerts -----------------------------------------------------------------------------


class AlertAcknowledge(Strict):
    note: str | None = Field(default=None, max_length=2000)


class AlertResolve(Strict):
    outcome: Outcome
    note: str = Field(min_length=1, max_length=2000)


class EpisodePublic(BaseModel):
    key: str
    type: str
    start: int
    end: int | None
    duration_s: int | None
    confirmed_t: int = Field(description="event time the condition became alert-worthy")
    rule_version: int
    late: bool
    cleared: bool
    evidence: list[dict[str, Any]]
    details: dict[str, Any]
    raised_at: float = Field(description="backend time the episode was first stored")


class ActionPublic(BaseModel):
    at: float
    user_id: int | None
    action: str
    note: str | None


class AlertPublic(BaseModel):
    id: int
    subject_id: int
    unit_id: int
    rule: str
    type: str
    severity: str
    state: AlertState
    start: int
    end: int | None
    duration_s: int | None
    episodes: int
    late: bool
    rule_version: int
    raised_at: float
    updated_at: float
    acknowledged_by: int | None
    acknowledged_at: float | None
    resolved_by: int | None
    resolved_at: float | None
    outcome: str | None
    note: str | None
    reopened: int


class AlertDetail(AlertPublic):
    episode_list: list[EpisodePublic]
    actions: list[ActionPublic]


class RuleInfo(BaseModel):
    rule: str
    version: int
    params: dict[str, Any]
