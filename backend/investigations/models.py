"""The investigations API's request and response bodies (pydantic v2), documented for the
OpenAPI schema the web UI is built against."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from backend.bounds import LATEST_S, Position
from backend.investigations.area import MAX_RADIUS_M, MIN_RADIUS_M, Area, AreaError
from backend.investigations.correlate import Params


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PointGeometry(_Strict):
    type: Literal["Point"]
    coordinates: Position = Field(description="the circle's centre, [lon, lat]")


class PolygonGeometry(_Strict):
    type: Literal["Polygon"]
    coordinates: list[list[Position]] = Field(description="linear rings, [lon, lat]")


class MultiPolygonGeometry(_Strict):
    type: Literal["MultiPolygon"]
    coordinates: list[list[list[Position]]] = Field(description="polygons, [lon, lat]")


# A GeoJSON geometry: Point (with `radius_m` beside it), Polygon or MultiPolygon.
Geometry = Annotated[
    PointGeometry | PolygonGeometry | MultiPolygonGeometry, Field(discriminator="type")
]
_GEOMETRY: TypeAdapter[PointGeometry | PolygonGeometry | MultiPolygonGeometry] = TypeAdapter(
    Geometry
)


class Place(BaseModel):
    """Where: a GeoJSON Point with `radius_m` (a circle), or a Polygon/MultiPolygon."""

    model_config = ConfigDict(strict=True)  # no coercion: JSON `true` is not a time
    geometry: Geometry
    radius_m: float | None = Field(
        default=None,
        ge=MIN_RADIUS_M,
        le=MAX_RADIUS_M,
        description="circle radius for a Point (metres)",
    )

    @model_validator(mode="after")
    def _shape(self) -> Place:
        if self.geometry.type == "Point" and self.radius_m is None:
            raise ValueError("a Point needs radius_m")
        if self.geometry.type != "Point" and self.radius_m is not None:
            raise ValueError("radius_m applies to a Point only")
        return self

    def area(self) -> Area:
        return _area(self.geometry, self.radius_m)


def place_area(geometry: Any, radius_m: float | None) -> Area:
    """An Area from a GeoJSON geometry as read from a file (+ radius for a Point), checked
    as the API checks one; AreaError if unusable."""
    try:
        geom = _GEOMETRY.validate_python(geometry)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"][1:])
        raise AreaError(f"geometry {where}: {first['msg']}".replace(" :", ":")) from e
    return _area(geom, radius_m)


def _area(
    geometry: PointGeometry | PolygonGeometry | MultiPolygonGeometry, radius_m: float | None
) -> Area:
    if isinstance(geometry, PointGeometry):
        if radius_m is None:
            raise AreaError("a Point needs radius_m")
        lon, lat = geometry.coordinates[:2]
        return Area.circle(lat, lon, radius_m)
    return Area.polygon(geometry.model_dump())


class Options(BaseModel):
    """How sure a position must be (docs/investigations.md, "Accuracy")."""

    model_config = ConfigDict(strict=True)
    k: float = Field(default=1.0, ge=0, le=5, description="accuracy multiplier")
    max_gap_s: int = Field(
        default=900, ge=0, le=7200, description="interpolate between fixes at most this far apart"
    )

    def params(self) -> Params:
        return Params(k=self.k, max_gap_s=self.max_gap_s)


class CorrelationQuery(Place):
    """An ad-hoc correlation: a place and a time window."""

    reference: str = Field(
        min_length=1, max_length=100, description="the incident or case reference"
    )
    start: int = Field(alias="from", ge=0, lt=LATEST_S, description="window start, Unix s")
    end: int = Field(alias="to", ge=0, lt=LATEST_S, description="window end, Unix s")
    options: Options = Field(default_factory=Options)

    model_config = ConfigDict(populate_by_name=True)


class FixOut(BaseModel):
    t: int
    lat: float
    lon: float
    accuracy_m: float
    device: int
    source: str = Field(description="fix (GNSS) or rf_home_fix (the tag's home position)")
    edge_m: float | None = Field(
        default=None, description="signed distance to the area's edge, negative inside"
    )


class ApproachOut(BaseModel):
    """A position relative to the area: a fix, a point interpolated between two fixes, or
    a home stay."""

    t: int = Field(description="when (Unix s)")
    lat: float
    lon: float
    distance_m: float = Field(description="distance to the area, 0 inside")
    edge_m: float = Field(description="signed distance to the area's edge, negative inside")
    accuracy_m: float
    source: Literal["fix", "rf_home_fix", "interpolated", "home_presence"]
    status: Literal["within", "possibly_within", "not_within"]
    evidence: list[dict[str, Any]] = Field(
        description="the fix, the two fixes an interpolation lies between, or the home stay"
    )
    gap_s: int | None = Field(default=None, description="interpolated: seconds between fixes")


class HitOut(BaseModel):
    subject_id: int
    reference: str
    name: str
    status: Literal["within", "possibly_within"]
    closest: ApproachOut
    inside_s: int = Field(description="time inside the area by the best estimate")
    first_inside: int | None
    last_inside: int | None
    fixes_in_window: int
    devices: list[int]
    path: list[list[float]] = Field(description="[lon, lat, t] through the window")


class CorrelationResult(BaseModel):
    reference: str
    purpose: str
    area: dict[str, Any]
    start: int = Field(serialization_alias="from")
    end: int = Field(serialization_alias="to")
    options: Options
    count: int
    hits: list[HitOut]
    audit_id: int = Field(description="the audit record of this query")


class WhereaboutsQuery(Place):
    reference: str = Field(min_length=1, max_length=100)
    start: int = Field(alias="from", ge=0, lt=LATEST_S)
    end: int = Field(alias="to", ge=0, lt=LATEST_S)
    options: Options = Field(default_factory=Options)

    model_config = ConfigDict(populate_by_name=True)


class WhereaboutsResult(BaseModel):
    """The exculpatory answer: where the subject was instead, with the evidence."""

    subject_id: int
    reference: str
    status: Literal["within", "possibly_within", "not_within", "no_data"]
    summary: str
    closest: ApproachOut | None
    inside_s: int
    coverage: float = Field(description="fraction of the window the evidence covers")
    complete: bool
    gaps: list[list[int]] = Field(description="[start, end] stretches without evidence")
    before: FixOut | None = Field(description="last fix at or before the window")
    after: FixOut | None = Field(description="first fix at or after the window")
    fixes: list[FixOut]
    home_stays: list[dict[str, Any]] = Field(
        description="home presence in the window, each at its home with that home's edge_m"
    )
    home_distance_m: float | None = Field(
        description="how far the nearest of the subject's homes is from the area"
    )
    fixes_in_window: int
    audit_id: int


class IncidentResult(BaseModel):
    at: str = Field(
        description="where in the file: 'line N' (CSV) or 'feature N (line L)' (GeoJSON)"
    )
    reference: str
    area: dict[str, Any]
    start: int = Field(serialization_alias="from")
    end: int = Field(serialization_alias="to")
    count: int
    hits: list[HitOut]


class IncidentError(BaseModel):
    at: str
    line: int | None = Field(
        default=None,
        description="CSV line (header is line 1), or the line a GeoJSON feature starts on",
    )
    feature: int | None = Field(default=None, description="GeoJSON feature index (from 1)")
    reason: str


class BatchResult(BaseModel):
    reference: str
    purpose: str
    format: Literal["csv", "geojson"]
    incidents: list[IncidentResult]
    errors: list[IncidentError]
    subjects: int = Field(description="distinct subjects in all hits")
    audit_id: int


class NightOut(BaseModel):
    night: str = Field(description="local date the curfew window starts on")
    start: int = Field(description="the window's start (the fitting, if the tag was fitted in it)")
    end: int
    status: Literal["kept", "broken", "in_progress"] = Field(
        description="in_progress: the window has not ended and has no breach yet"
    )
    kept: bool
    minutes_away: float = Field(description="minutes away from home inside the window")
    alerts: list[int]


class CompletenessOut(BaseModel):
    fix_interval_s: int
    away_s: int = Field(description="monitored seconds away from home")
    expected_fixes: int = Field(description="one per fix_interval_s of time away")
    received_fixes: int
    ratio: float | None
    longest_gap_s: int
    frames_expected: int = Field(description="by the devices' sequence numbers")
    frames_received: int


class ChargingDayOut(BaseModel):
    day: str
    minutes: float
    required: int | None
    compliant: bool | None


class ComplianceOut(BaseModel):
    """A subject's compliance over a period (docs/investigations.md, "Reports")."""

    subject_id: int
    reference: str
    name: str
    tz: str
    start: int = Field(serialization_alias="from")
    end: int = Field(serialization_alias="to")
    generated_at: float
    monitored: list[tuple[int, int]] = Field(
        description="the parts of the period that count: a tag fitted, an order running, "
        "not after the report was made"
    )
    summary: dict[str, Any]
    nights: list[NightOut]
    zone_events: list[dict[str, Any]]
    tamper_events: list[dict[str, Any]]
    battery_events: list[dict[str, Any]]
    charging: list[ChargingDayOut]
    completeness: CompletenessOut | None
    alerts_by_outcome: dict[str, int] = Field(
        description="resolved alerts by outcome; others by state (open, acknowledged, cleared)"
    )
    alerts_by_type: dict[str, int]
    alerts: list[dict[str, Any]]


class CaseloadRow(BaseModel):
    subject_id: int
    reference: str
    name: str
    owned: bool = Field(description="owned by the caller's unit (else shared with it)")
    open_alerts: int
    last_contact: int | None = Field(description="newest event time from the subject's tags")
    curfew_nights: int
    curfew_nights_kept: int
    curfew_nights_broken: int
    curfew_nights_in_progress: int
    monitored_s: int
    curfew_minutes_away: float
    zone_events: int
    tamper_events: int
    battery_events: int
    charging_days: int
    charging_days_compliant: int
    expected_fixes: int
    received_fixes: int
    completeness: float | None
    alerts: int


class FleetRow(BaseModel):
    device: int
    kind: Literal["tag", "home_unit"]
    registered_at: float
    retired: bool
    last_contact: float | None = Field(description="backend time of the last frame")
    last_event_at: int | None
    contact_age_s: int | None
    online: bool
    battery_pct: int | None
    charging: bool | None
    firmware: int | None
    buffer_fill: float | None = Field(description="tag flash buffer used, 0-1")
    home_link: Literal["online", "offline"] | None
    subject_id: int | None = Field(
        default=None, description="only for supervisors and officers of the owning unit"
    )
