"""Incident files for the batch correlation run (the daily crime-data run): CSV or GeoJSON.

CSV: a header line naming the columns `reference, lat, lon, radius_m, from, to` (any order;
`start`/`end` are accepted for `from`/`to`). GeoJSON: a FeatureCollection whose features are
a Point with `radius_m` in its properties, or a Polygon/MultiPolygon, with `reference`,
`from` and `to` properties. Times are Unix seconds or ISO 8601 with a UTC offset (a time
without one is ambiguous across a clock change, so it is refused).

A bad row never stops the run: it is reported with where it is (CSV line number, header =
line 1; GeoJSON feature number, from 1, and the line it starts on) and why, and the good rows
still run."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.bounds import LATEST_S
from backend.investigations.area import Area, AreaError
from backend.investigations.correlate import MAX_WINDOW_S
from backend.investigations.models import place_area

MAX_INCIDENTS = 500
MAX_REFERENCE = 100
# A GeoJSON incident file nests 8 levels (a MultiPolygon's positions inside a feature); a
# deeper one is refused before parsing, which would otherwise recurse until Python's limit.
MAX_JSON_DEPTH = 16
# Digits of one JSON number: a coordinate or a Unix time needs far fewer, and Python refuses
# to convert integers of more than 4,300 digits with a ValueError of its own.
MAX_NUMBER_CHARS = 40


@dataclass(frozen=True)
class Incident:
    at: str
    reference: str
    area: Area
    start: int
    end: int


@dataclass(frozen=True)
class Problem:
    at: str
    reason: str
    line: int | None = None
    feature: int | None = None


class IncidentFileError(ValueError):
    """The file as a whole cannot be read (not CSV/GeoJSON, no header...)."""


def parse_time(value: Any) -> int:
    if value is None:
        raise ValueError("missing time")
    if isinstance(value, bool):
        raise ValueError("a time is Unix seconds or ISO 8601")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < LATEST_S:
            raise ValueError("a Unix time is seconds since 1970, before 2100")
        return int(value)
    text = str(value).strip()
    if not text:
        raise ValueError("missing time")
    if text.lstrip("-").isdigit():
        return parse_time(int(text))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"{text[:40]!r} is not Unix seconds or ISO 8601") from e
    if dt.tzinfo is None:
        raise ValueError("an ISO 8601 time needs a UTC offset (e.g. Z or +01:00)")
    return int(dt.timestamp())


def _window(start: Any, end: Any) -> tuple[int, int]:
    t0, t1 = parse_time(start), parse_time(end)
    if t1 <= t0:
        raise ValueError("`to` must be after `from`")
    if t1 - t0 > MAX_WINDOW_S:
        raise ValueError(f"the window may be at most {MAX_WINDOW_S // 86400} days")
    return t0, t1


def _reference(value: Any) -> str:
    ref = "" if value is None else str(value).strip()
    if not ref:
        raise ValueError("missing reference")
    if len(ref) > MAX_REFERENCE:
        raise ValueError(f"reference longer than {MAX_REFERENCE} characters")
    return ref


def parse(data: bytes, filename: str = "") -> tuple[str, list[Incident], list[Problem]]:
    """(format, incidents, problems). GeoJSON if the name ends .geojson/.json or the text
    starts with `{`; CSV otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise IncidentFileError("the file is not UTF-8 text") from e
    name = filename.lower()
    if name.endswith((".geojson", ".json")) or text.lstrip().startswith("{"):
        incidents, problems = _geojson(text)
        return "geojson", incidents, problems
    incidents, problems = _csv(text)
    return "csv", incidents, problems


_ALIASES = {"start": "from", "end": "to", "radius": "radius_m", "latitude": "lat",
            "longitude": "lon", "lng": "lon", "ref": "reference"}  # fmt: skip
_COLUMNS = ("reference", "lat", "lon", "radius_m", "from", "to")


def _csv(text: str) -> tuple[list[Incident], list[Problem]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration as e:
        raise IncidentFileError("the CSV file is empty") from e
    except csv.Error as e:
        raise IncidentFileError(f"the CSV header cannot be read: {e}") from e
    cols = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    missing = [c for c in _COLUMNS if c not in cols]
    if missing:
        raise IncidentFileError(
            f"the CSV header lacks {', '.join(missing)} (needs {', '.join(_COLUMNS)})"
        )
    where = {c: cols.index(c) for c in _COLUMNS}
    incidents: list[Incident] = []
    problems: list[Problem] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            line = reader.line_num
            problems.append(Problem(f"line {line}", f"unreadable CSV: {e}", line=line))
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(incidents) >= MAX_INCIDENTS:
            problems.append(
                Problem(f"line {line}", f"more than {MAX_INCIDENTS} incidents", line=line)
            )
            continue
        try:
            if len(row) < len(cols):
                raise ValueError(f"{len(row)} columns, the header has {len(cols)}")
            ref = _reference(row[where["reference"]])
            lat = _number(row[where["lat"]], "lat")
            lon = _number(row[where["lon"]], "lon")
            radius = _number(row[where["radius_m"]], "radius_m")
            area = Area.circle(lat, lon, radius)
            t0, t1 = _window(row[where["from"]], row[where["to"]])
        except (ValueError, AreaError) as e:
            problems.append(Problem(f"line {line}", str(e), line=line))
            continue
        incidents.append(Incident(f"line {line}", ref, area, t0, t1))
    return incidents, problems


def _number(text: str, name: str) -> float:
    try:
        v = float(text)
    except ValueError as e:
        raise ValueError(f"{name} is not a number") from e
    if not math.isfinite(v):
        raise ValueError(f"{name} is not a finite number")
    return v


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """How deep arrays and objects nest (strings skipped; unbalanced text is the parser's
    to report)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _bounded(kind: type[int] | type[float]) -> Any:
    def parse(literal: str) -> int | float:
        if len(literal) > MAX_NUMBER_CHARS:
            raise IncidentFileError(f"a number has more than {MAX_NUMBER_CHARS} digits")
        return kind(literal)

    return parse


def _constant(name: str) -> Any:
    raise IncidentFileError(f"{name} is not a number JSON allows")


def _load(text: str) -> Any:
    if _depth(text) > MAX_JSON_DEPTH:
        raise IncidentFileError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(
            text, parse_int=_bounded(int), parse_float=_bounded(float), parse_constant=_constant
        )
    except json.JSONDecodeError as e:
        raise IncidentFileError(f"not valid JSON (line {e.lineno}: {e.msg})") from e


def _geojson(text: str) -> tuple[list[Incident], list[Problem]]:
    doc = _load(text)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise IncidentFileError("GeoJSON incidents must be a FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise IncidentFileError("the FeatureCollection has no features list")
    lines = _feature_lines(text)
    incidents: list[Incident] = []
    problems: list[Problem] = []
    for n, feat in enumerate(features, start=1):
        line = lines[n - 1] if len(lines) == len(features) else None
        at = f"feature {n}" + ("" if line is None else f" (line {line})")
        if len(incidents) >= MAX_INCIDENTS:
            problems.append(
                Problem(at, f"more than {MAX_INCIDENTS} incidents", line=line, feature=n)
            )
            continue
        try:
            if not isinstance(feat, dict) or feat.get("type") != "Feature":
                raise ValueError("not a GeoJSON Feature")
            props = feat.get("properties") or {}
            geom = feat.get("geometry")
            if not isinstance(props, dict) or not isinstance(geom, dict):
                raise ValueError("a Feature needs geometry and properties objects")
            ref = _reference(props.get("reference"))
            radius = props.get("radius_m")
            if radius is not None and (
                isinstance(radius, bool) or not isinstance(radius, int | float)
            ):
                raise ValueError("radius_m is not a number")
            area = place_area(geom, None if radius is None else float(radius))
            t0, t1 = _window(props.get("from"), props.get("to"))
        except (ValueError, AreaError) as e:
            problems.append(Problem(at, str(e), line=line, feature=n))
            continue
        incidents.append(Incident(at, ref, area, t0, t1))
    return incidents, problems


def _feature_lines(text: str) -> list[int]:
    """The line on which each element of the top-level `features` array starts, found by
    walking the document with the JSON decoder (json.loads keeps no positions). Empty if
    the document is not shaped as expected (the caller then reports feature numbers)."""
    dec = json.JSONDecoder()
    ws = " \t\n\r"

    def skip(i: int) -> int:
        while i < len(text) and text[i] in ws:
            i += 1
        return i

    try:
        i = skip(0)
        if text[i] != "{":
            return []
        i = skip(i + 1)
        while i < len(text) and text[i] != "}":
            key, i = dec.raw_decode(text, i)
            i = skip(i)
            if text[i] != ":":
                return []
            i = skip(i + 1)
            if key == "features" and text[i] == "[":
                out = []
                i = skip(i + 1)
                while text[i] != "]":
                    out.append(text.count("\n", 0, i) + 1)
                    _, i = dec.raw_decode(text, i)
                    i = skip(i)
                    if text[i] == ",":
                        i = skip(i + 1)
                return out
            _, i = dec.raw_decode(text, i)
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
    except (ValueError, IndexError):
        return []
    return []
