"""The web application's settings: the map's tile source and its vector world layer, the
initial view, and the alert sound. TAGWATCH_WEB_* environment variables override the
defaults (docs/web.md). With no tile source the map draws the world layer (the simulator's
land, roads and places) as its base map, which is the default: a police deployment points
it at its own GIS tile server (an XYZ or a WMTS address, e.g. OS Maps or OpenStreetMap)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_WMTS = {r"\{TileMatrix\}": "{z}", r"\{TileRow\}": "{y}", r"\{TileCol\}": "{x}"}


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAGWATCH_WEB_", extra="ignore")

    # An XYZ tile URL template, e.g. https://tiles.example.police.uk/{z}/{x}/{y}.png, or a
    # WMTS one in a Web Mercator tile matrix set ({TileMatrix}, {TileRow}, {TileCol}, as
    # WMTS RESTful templates and KVP GetTile addresses name them); its origin is added to the
    # pages' Content-Security-Policy (img-src). Empty: no tiles.
    tile_url: str = ""
    tile_attribution: str = Field(default="", max_length=500)
    tile_max_zoom: int = Field(default=19, ge=1, le=24)
    # A GeoJSON FeatureCollection drawn under everything (the simulator's world: land,
    # roads, places). Empty: <data_dir>/world.geojson if that file exists.
    world_layer: Path | None = None
    # Where the map opens before it has anything to show (Bournemouth, the seed case).
    center_lat: float = Field(default=50.7200, ge=-90, le=90)
    center_lon: float = Field(default=-1.8795, ge=-180, le=180)
    zoom: int = Field(default=12, ge=1, le=22)
    # Whether the alert queue plays a tone for a new alert (each officer can mute it).
    alert_sound: bool = True
    # How often the live map reloads every subject (freshness, presence, home units); new
    # positions and alerts arrive over the streams in between.
    live_refresh_s: int = Field(default=30, ge=2, le=3600)

    @field_validator("tile_url")
    @classmethod
    def _tile_url(cls, v: str) -> str:
        if not v:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("tile_url must be an http(s) URL")
        xyz = all(k in v for k in ("{z}", "{x}", "{y}"))
        wmts = all(re.search(k, v, re.I) for k in _WMTS)
        if not (xyz or wmts):
            raise ValueError(
                "tile_url must contain {z}, {x} and {y} (XYZ) or {TileMatrix}, {TileRow} and "
                "{TileCol} (WMTS)"
            )
        if any(c in v for c in " ;'\"\n\r"):
            raise ValueError("tile_url may not contain spaces, quotes or semicolons")
        return v

    def tile_template(self) -> str:
        """The tile address as Leaflet takes it: WMTS's {TileMatrix}, {TileRow} and
        {TileCol} are the XYZ scheme's {z}, {y} and {x} in a Web Mercator matrix set."""
        out = self.tile_url
        for pattern, xyz in _WMTS.items():
            out = re.sub(pattern, xyz, out, flags=re.I)
        return out

    def tile_origin(self) -> str:
        """scheme://host[:port] of the tile server, or '' without one."""
        if not self.tile_url:
            return ""
        parts = urlsplit(self.tile_url)
        # A {s} subdomain placeholder becomes a wildcard source.
        host = parts.netloc.replace("{s}", "*")
        return f"{parts.scheme}://{host}"

    def content_security_policy(self) -> bytes:
        """The pages' policy: everything from the application itself, tiles from the
        configured server, nothing inline, no framing."""
        img = " ".join(s for s in ("'self'", "data:", "blob:", self.tile_origin()) if s)
        return (
            "default-src 'none'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; font-src 'self'; media-src 'self'; "
            "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        ).encode()
