"""What the officers' web application needs beyond the monitoring API: its configuration
(tile source), the world layer, every visible subject's last position (the live map) and a
stream of new positions, a subject's device events (the timeline), and a zone preview (which
recent fixes a drawn zone would have counted as a breach). `install(app)` also serves the
application's static files (backend/web/static) and Leaflet from backend/web/node_modules.

Every route takes its caller from backend/api/deps.py like the rest of the API: lists are
scoped with `visible_subjects(...)`, subject routes with `subject_scope(...)`, the stream
with `stream_access(...)`. The live map shows a subject's zones (and its home unit's place,
the home zone's centre) only with the conditions scope: live alone is positions."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, func, select
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from backend.api import sse
from backend.api.deps import (
    DB,
    Audit,
    Auditor,
    ClockDep,
    Context,
    CurrentUser,
    EngineDep,
    RequestId,
    StreamAccess,
    SubjectAlerts,
    SubjectTrail,
    Visible,
    stream_access,
    visible_subjects,
)
from backend.api.models_monitoring import FeatureCollection, Strict, ZoneFeatureCreate
from backend.api.routes_subjects import zone_feature
from backend.bounds import LATEST_S
from backend.rules.geo import Projection, ZoneIndex
from backend.rules.schedule import active_at
from backend.rules.zones import ZoneParams
from backend.security import roles
from backend.security.access import subject_access
from backend.storage.position_queries import trail as trail_query
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    assignments,
    device_events,
    devices,
    positions,
    presence,
    subjects,
    zones,
)
from backend.web.settings import WebSettings

router = APIRouter(prefix="/api/web", tags=["web"])

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
LEAFLET_DIR = WEB_DIR / "node_modules" / "leaflet" / "dist"

POLL_S = 0.5  # how often the position stream looks for new fixes
SESSION_CHECK_S = 5.0  # how often it re-checks the caller's session (logout, disabling)
KEEPALIVE_S = 15.0
MAX_WINDOW_S = 31 * 86400

VisibleLive = Annotated[Visible, Depends(visible_subjects(roles.LIVE))]
VisibleConditions = Annotated[Visible, Depends(visible_subjects(roles.CONDITIONS))]
LiveStream = Annotated[StreamAccess, Depends(stream_access(roles.LIVE, "live stream"))]
FromQ = Annotated[int | None, Query(alias="from", ge=0, lt=LATEST_S, description="Unix s")]
ToQ = Annotated[int | None, Query(alias="to", ge=0, lt=LATEST_S, description="Unix s")]


def get_web(conn: HTTPConnection) -> WebSettings:
    return web_settings(conn.app)


def web_settings(app: Any) -> WebSettings:
    found: WebSettings | None = getattr(app.state, "tagwatch_web", None)
    return found if found is not None else WebSettings()


WebDep = Annotated[WebSettings, Depends(get_web)]


# ---- configuration and world layer ------------------------------------------------------


class WebConfig(BaseModel):
    tile_url: str = Field(description="XYZ template; empty: vector layers only")
    tile_attribution: str
    tile_max_zoom: int
    world_layer: bool = Field(description="whether GET /api/web/world has a layer")
    # A list, not a tuple: OpenAPI tools that read `prefixItems` as draft-4 `items` reject it.
    center: list[float] = Field(
        min_length=2, max_length=2, description="[lat, lon] the map opens at"
    )
    zoom: int
    alert_sound: bool
    now: float = Field(description="backend clock, Unix s (simulated runs drive it)")


def _world_path(ctx: Any, web: WebSettings) -> Path | None:
    if web.world_layer is not None:
        return web.world_layer if web.world_layer.is_file() else None
    default = Path(ctx.settings.data_dir) / "world.geojson"
    return default if default.is_file() else None


@router.get("/config", response_model=WebConfig)
def config(user: CurrentUser, ctx: Context, web: WebDep) -> WebConfig:
    """The map's configuration and the backend's clock."""
    return WebConfig(
        tile_url=web.tile_url,
        tile_attribution=web.tile_attribution,
        tile_max_zoom=web.tile_max_zoom,
        world_layer=_world_path(ctx, web) is not None,
        center=[web.center_lat, web.center_lon],
        zoom=web.zoom,
        alert_sound=web.alert_sound,
        now=ctx.clock.now(),
    )


@dataclass
class _Cached:
    path: Path
    mtime: float
    body: bytes


_world_cache: dict[Path, _Cached] = {}


@router.get(
    "/world",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}, "description": "GeoJSON"}},
)
def world(user: CurrentUser, ctx: Context, web: WebDep) -> Response:
    """The vector world layer (land, roads, places) as a GeoJSON FeatureCollection; 404
    when none is configured. It holds no subject data."""
    path = _world_path(ctx, web)
    if path is None:
        raise HTTPException(404, "no world layer configured")
    mtime = path.stat().st_mtime
    cached = _world_cache.get(path)
    if cached is None or cached.mtime != mtime:
        body = path.read_bytes()
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise HTTPException(503, "the world layer is not valid JSON") from e
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
            raise HTTPException(503, "the world layer is not a GeoJSON FeatureCollection")
        cached = _Cached(path, mtime, body)
        _world_cache[path] = cached
    return Response(cached.body, media_type="application/geo+json")


# ---- live map ---------------------------------------------------------------------------


class LivePosition(BaseModel):
    t: int = Field(description="event time, Unix s")
    lat: float
    lon: float
    accuracy_m: float
    source: Literal["gnss", "rf_home"]
    late: bool


class Presence(BaseModel):
    t: int | None
    at_home: bool
    home_unit: int


class HomeUnitPublic(BaseModel):
    device: int
    last_seen_at: float | None = Field(description="backend time of its last frame")
    lat: float | None = Field(
        description="the home zone's centre, if the subject has one and the caller may see "
        "its zones (the conditions scope)"
    )
    lon: float | None


class LiveSubject(BaseModel):
    id: int
    reference: str
    name: str
    unit_id: int
    owner: bool = Field(description="false: shared with the caller's unit")
    tag: int | None
    tag_last_seen_at: float | None
    position: LivePosition | None
    presence: Presence | None
    home_unit: HomeUnitPublic | None


class LiveView(BaseModel):
    now: float = Field(description="backend clock, Unix s")
    subjects: list[LiveSubject]
    zones: FeatureCollection = Field(
        description="the zones of the listed subjects the caller may see with the conditions "
        "scope (a share for live positions alone shows none)"
    )


def _in_force(now: float) -> Any:
    a = assignments.c
    return (a.starts_at <= now) & ((a.ends_at.is_(None)) | (a.ends_at > now))


def _last_position(db: Connection, tag: int, since: int) -> LivePosition | None:
    p = positions.c
    r = db.execute(
        select(p.ts, p.lat_e7, p.lon_e7, p.acc_dm, p.source, p.late)
        .where(p.device == tag, p.ts >= since)
        .order_by(p.ts.desc(), p.id.desc())
        .limit(1)
    ).first()
    if r is None:
        return None
    return LivePosition(
        t=r.ts,
        lat=r.lat_e7 / 1e7,
        lon=r.lon_e7 / 1e7,
        accuracy_m=r.acc_dm / 10,
        source="rf_home" if r.source == 1 else "gnss",
        late=bool(r.late),
    )


def _presence(db: Connection, tag: int, since: int) -> Presence | None:
    q = presence.c
    r = db.execute(
        select(q.ts, q.state, q.home_unit)
        .where(q.tag == tag, (q.ts.is_(None)) | (q.ts >= since))
        .order_by(q.id.desc())
        .limit(1)
    ).first()
    return None if r is None else Presence(t=r.ts, at_home=r.state == 1, home_unit=r.home_unit)


@router.get("/live", response_model=LiveView)
def live(
    user: CurrentUser,
    visible: VisibleLive,
    conditions: VisibleConditions,
    db: DB,
    clock: ClockDep,
    log: Audit,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> LiveView:
    """Every subject the caller may see live: its last position (with accuracy), the
    presence its home unit last reported and its home unit; and the zones of those whose
    conditions the caller may also see. Audited as a consultation of each subject, per scope
    (a disclosure for subjects shared with the caller)."""
    now = clock.now()
    ids = list(
        db.execute(
            select(subjects.c.id)
            .where(visible.where(subjects.c.id))
            .order_by(subjects.c.id)
            .limit(limit)
        ).scalars()
    )
    fitted: dict[int, dict[str, tuple[int, int]]] = {}
    for r in db.execute(
        select(assignments.c.subject_id, assignments.c.role, assignments.c.device)
        .add_columns(assignments.c.starts_at)
        .where(assignments.c.subject_id.in_(ids), _in_force(now))
    ):
        fitted.setdefault(r.subject_id, {})[r.role] = (r.device, r.starts_at)
    seen = {
        r.id: r.last_seen_at
        for r in db.execute(
            select(devices.c.id, devices.c.last_seen_at).where(
                devices.c.id.in_([d for f in fitted.values() for d, _ in f.values()])
            )
        )
    }
    zone_rows = list(
        db.execute(
            select(zones)
            .where(zones.c.subject_id.in_(ids), conditions.where(zones.c.subject_id))
            .order_by(zones.c.id)
        )
    )
    homes: dict[int, tuple[float, float]] = {}
    for z in zone_rows:
        if z.kind == "home" and z.shape == "circle":
            lon, lat = z.geometry["coordinates"][:2]
            homes[z.subject_id] = (float(lat), float(lon))

    out: list[LiveSubject] = []
    for sid in ids:
        found = subject_access(db, user, sid, now)
        if found is None or not found.can(roles.LIVE):
            continue
        f = fitted.get(sid, {})
        tag = f.get(TAG)
        unit = f.get(HOME_UNIT)
        home = homes.get(sid)
        out.append(
            LiveSubject(
                id=sid,
                reference=found.reference,
                name=found.name,
                unit_id=found.unit_id,
                owner=found.owner,
                tag=tag[0] if tag else None,
                tag_last_seen_at=seen.get(tag[0]) if tag else None,
                position=_last_position(db, *tag) if tag else None,
                presence=_presence(db, *tag) if tag else None,
                home_unit=HomeUnitPublic(
                    device=unit[0],
                    last_seen_at=seen.get(unit[0]),
                    lat=home[0] if home else None,
                    lon=home[1] if home else None,
                )
                if unit
                else None,
            )
        )
    listed = {s.id for s in out}
    shown_zones = [z for z in zone_rows if z.subject_id in listed]
    log.consulted(roles.LIVE, listed, {"via": "live map"}, now)
    log.consulted(roles.CONDITIONS, {z.subject_id for z in shown_zones}, {"via": "live map"}, now)
    return LiveView(
        now=now,
        subjects=out,
        zones=FeatureCollection(features=[zone_feature(z) for z in shown_zones]),
    )


def _new_positions(
    engine: Engine, visible: Visible, after_id: int
) -> tuple[int, list[dict[str, Any]]]:
    """Positions stored after `after_id` of tags fitted (at the fix's time) to subjects the
    caller may see live; and the cursor to continue from."""
    a, p = assignments.c, positions.c
    with engine.connect() as conn:
        spans: dict[int, list[tuple[int, int, int | None]]] = {}
        for span in conn.execute(
            select(a.device, a.subject_id, a.starts_at, a.ends_at).where(
                a.role == TAG, visible.where(a.subject_id)
            )
        ):
            spans.setdefault(span.device, []).append(
                (span.subject_id, span.starts_at, span.ends_at)
            )
        head = int(conn.execute(select(func.max(p.id))).scalar() or 0)
        if not spans or head <= after_id:
            return max(head, after_id), []
        rows = conn.execute(
            select(p.id, p.device, p.ts, p.lat_e7, p.lon_e7, p.acc_dm, p.source, p.late)
            .where(p.id > after_id, p.id <= head, p.device.in_(list(spans)))
            .order_by(p.id)
            .limit(2000)
        ).all()
    out = []
    for r in rows:
        for sid, s, e in spans[r.device]:
            if s <= r.ts and (e is None or r.ts < e):
                out.append(
                    {
                        "id": r.id,
                        "subject_id": sid,
                        "t": r.ts,
                        "lat": r.lat_e7 / 1e7,
                        "lon": r.lon_e7 / 1e7,
                        "accuracy_m": r.acc_dm / 10,
                        "source": "rf_home" if r.source == 1 else "gnss",
                        "late": bool(r.late),
                    }
                )
                break
    # A full batch continues from its last row; otherwise everything up to head was seen.
    cursor = rows[-1].id if len(rows) == 2000 else head
    return cursor, out


@router.get(
    "/live/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `event: position` (`id:` the position row, "
            "`data:` subject_id, t, lat, lon, accuracy_m, source, late); `event: end` when "
            "the session ends",
        }
    },
)
async def live_stream(
    request: Request,
    user: CurrentUser,
    access: LiveStream,
    engine: EngineDep,
    clock: ClockDep,
    request_id: RequestId,
    last_event_id: sse.LastEventId = None,
) -> StreamingResponse:
    """New positions of subjects the caller may see live, as Server-Sent Events. Each
    position's subject is checked again when it is sent (a share that expires stops at
    once), and recorded per subject (read.live, or disclose.live through a share); the
    session every few seconds (logout or disabling ends the stream). Accept
    text/event-stream."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise HTTPException(406, "this is a Server-Sent Events stream: Accept text/event-stream")
    resume = last_event_id

    def opened() -> int:
        # Off the event loop: waiting for SQLite's write lock here would block the loop
        # that the lock's holder (a request finishing its transaction) needs to commit.
        Auditor(user, request_id, clock, engine).record(
            "stream.live", scope=roles.LIVE, detail={"via": "live map"}
        )
        if resume is not None:
            return resume
        with engine.connect() as conn:
            return int(conn.execute(select(func.max(positions.c.id))).scalar() or 0)

    cursor = await run_in_threadpool(opened)

    def fetch(after_id: int, now: float) -> tuple[int, list[tuple[int, str, dict[str, Any], int]]]:
        last, batch = _new_positions(engine, access.visible(now), after_id)
        return last, [(body["id"], "position", body, body["subject_id"]) for body in batch]

    return sse.response(
        sse.events(
            request,
            clock,
            access,
            fetch,
            cursor,
            poll_s=POLL_S,
            session_check_s=SESSION_CHECK_S,
            keepalive_s=KEEPALIVE_S,
        )
    )


# ---- subject timeline -------------------------------------------------------------------


class DeviceEventPublic(BaseModel):
    t: int | None = Field(description="event time, Unix s (None: the device had no time)")
    device: int
    role: str
    kind: str
    data: dict[str, Any]
    late: bool


def _window(start: int | None, end: int | None, now: float) -> tuple[int, int]:
    end = int(now) if end is None else end
    start = end - 86400 if start is None else start
    if end < start or end - start > MAX_WINDOW_S:
        raise HTTPException(422, "`to` must be after `from`, at most 31 days later")
    return start, end


@router.get("/subjects/{subject_id}/events", response_model=list[DeviceEventPublic])
def subject_events(
    subject: SubjectAlerts,
    db: DB,
    clock: ClockDep,
    start: FromQ = None,
    end: ToQ = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[DeviceEventPublic]:
    """What the subject's tag and home unit reported in [from, to] (tamper, battery,
    charging, mode, link...), newest first, for the timeline beside its alerts."""
    start, end = _window(start, end, clock.now())
    a, e = assignments.c, device_events.c
    out: list[DeviceEventPublic] = []
    for dev, role, s, until in db.execute(
        select(a.device, a.role, a.starts_at, a.ends_at).where(a.subject_id == subject.id)
    ):
        lo, hi = max(start, s), min(end, (until - 1) if until is not None else end)
        if lo > hi:
            continue
        for r in db.execute(
            select(e.ts, e.kind, e.data, e.late)
            .where(e.device == dev, e.ts.between(lo, hi))
            .order_by(e.ts.desc())
            .limit(limit)
        ):
            data = r.data if isinstance(r.data, dict) else {"value": r.data}
            out.append(
                DeviceEventPublic(
                    t=r.ts, device=dev, role=role, kind=r.kind, data=data, late=bool(r.late)
                )
            )
    out.sort(key=lambda x: x.t or 0, reverse=True)
    return out[:limit]


# ---- zone preview -----------------------------------------------------------------------


class ZonePreviewRequest(Strict):
    zone: ZoneFeatureCreate
    start: int | None = Field(default=None, ge=0, lt=LATEST_S, description="Unix s; default to-24h")
    end: int | None = Field(default=None, ge=0, lt=LATEST_S, description="Unix s; default now")


class PreviewFix(BaseModel):
    t: int
    lat: float
    lon: float
    accuracy_m: float
    distance_m: float = Field(description="signed distance to the zone's edge; < 0 inside")
    breach: bool = Field(description="a confident breach sample (inside an exclusion zone, "
                         "outside an inclusion zone, beyond the accuracy margin)")  # fmt: skip
    scheduled: bool = Field(description="the zone's schedule is active at this time")


class PreviewEpisode(BaseModel):
    start: int
    end: int
    fixes: int
    would_alert: bool = Field(description="long and well-sampled enough to pass the dwell")


class ZonePreviewResult(BaseModel):
    checked: int = Field(description="fixes in the window")
    dwell_s: int
    fixes: list[PreviewFix] = Field(description="breach samples and fixes in the edge band")
    episodes: list[PreviewEpisode]


def subject_fixes(db: Connection, subject_id: int, start: int, end: int) -> list[Any]:
    """The subject's fixes in [start, end] from every tag fitted at the time, in time order."""
    a = assignments.c
    rows: list[Any] = []
    for dev, s, until in db.execute(
        select(a.device, a.starts_at, a.ends_at).where(a.subject_id == subject_id, a.role == TAG)
    ):
        lo, hi = max(start, s), min(end, (until - 1) if until is not None else end)
        if lo <= hi:
            rows.extend(trail_query(db, dev, lo, hi))
    rows.sort(key=lambda r: (r.ts, r.id))
    return rows


@router.post("/subjects/{subject_id}/zone-preview", response_model=ZonePreviewResult)
def zone_preview(
    subject: SubjectTrail, body: ZonePreviewRequest, db: DB, clock: ClockDep
) -> ZonePreviewResult:
    """Which of the subject's fixes in the window the drawn zone would have counted as a
    breach, with the zone rule's accuracy margin and hysteresis (docs/rules.md), and the runs
    of breach samples long enough to pass its dwell. Reads the trail: `purpose` required."""
    start, end = _window(body.start, body.end, clock.now())
    p = ZoneParams()
    props = body.zone.properties
    spec = body.zone.to_spec(0)
    lat0, lon0 = spec.anchor()
    index = ZoneIndex.build([spec], Projection(lat0, lon0))
    exclusion = props.kind == "exclusion"
    dwell = props.dwell_s if props.dwell_s is not None else (
        p.exclusion_dwell_s if exclusion else p.inclusion_dwell_s
    )  # fmt: skip
    rows = [
        r for r in subject_fixes(db, subject.id, start, end) if r.acc_dm / 10 <= p.max_accuracy_m
    ]
    fixes: list[PreviewFix] = []
    episodes: list[PreviewEpisode] = []
    if rows:
        lat = np.array([r.lat_e7 / 1e7 for r in rows])
        lon = np.array([r.lon_e7 / 1e7 for r in rows])
        acc = np.array([r.acc_dm / 10 for r in rows])
        x, y = index.proj.xy(lat, lon)
        # Every fix gets a signed distance: reach beyond the farthest fix.
        reach = float(np.hypot(x, y).max()) + 1e6
        pi, _zi, d = index.near(np.asarray(x, float), np.asarray(y, float), reach)
        dist = np.full(len(rows), np.inf)
        dist[pi] = d
        margin_in = p.k * acc
        margin_out = p.k * acc + p.hysteresis_m
        inside = dist <= -margin_in
        outside = dist >= margin_out
        breach = inside if exclusion else outside
        sure_ok = outside if exclusion else inside
        run: list[int] = []

        def close() -> None:
            if run:
                t0, t1 = rows[run[0]].ts, rows[run[-1]].ts
                episodes.append(
                    PreviewEpisode(
                        start=t0,
                        end=t1,
                        fixes=len(run),
                        would_alert=t1 - t0 >= dwell and len(run) >= p.min_fixes,
                    )
                )
                run.clear()

        for i, r in enumerate(rows):
            scheduled = not spec.schedule or active_at(spec.schedule, r.ts)
            is_breach = bool(breach[i]) and scheduled
            if is_breach:
                run.append(i)
            elif sure_ok[i] or not scheduled:
                close()
            if is_breach or not (breach[i] or sure_ok[i]):
                fixes.append(
                    PreviewFix(
                        t=r.ts,
                        lat=float(lat[i]),
                        lon=float(lon[i]),
                        accuracy_m=float(acc[i]),
                        distance_m=round(float(dist[i]), 1),
                        breach=is_breach,
                        scheduled=scheduled,
                    )
                )
        close()
    return ZonePreviewResult(checked=len(rows), dwell_s=dwell, fixes=fixes, episodes=episodes)


# ---- static files -----------------------------------------------------------------------


class _WithPolicy:
    """Adds the pages' Content-Security-Policy (SecurityMiddleware keeps a policy the
    application set on pages outside /api); read per request so tests can change it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], owner: FastAPI):
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = web_settings(self.owner).content_security_policy()

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"content-security-policy", policy)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_policy)


async def _home(request: Request) -> Response:
    return RedirectResponse("/web/", status_code=307)


def install(app: FastAPI, web: WebSettings | None = None) -> None:
    """The web API, and the application at /web/ (with Leaflet at /web/vendor/leaflet/
    once `make` has installed it); / redirects there. Mounted under /web so that no route
    added after this one is shadowed."""
    app.state.tagwatch_web = web or WebSettings()
    app.include_router(router)
    app.router.routes.append(Route("/", _home, methods=["GET"], include_in_schema=False))
    if LEAFLET_DIR.is_dir():
        leaflet = StaticFiles(directory=LEAFLET_DIR)
        app.router.routes.append(Mount("/web/vendor/leaflet", _WithPolicy(leaflet, app)))
    site = StaticFiles(directory=STATIC_DIR, html=True)
    app.router.routes.append(Mount("/web", _WithPolicy(site, app)))
