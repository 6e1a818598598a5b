"""The configuration document the backend pushes to a home unit (docs/home-unit.md,
"Pushed configuration"): paired tags with their beacon keys, curfew windows for local
display, and presence thresholds.

It travels as a retained MQTT message on firmware.topics.home_config(unit):
    {"doc": "<the document as a JSON string>", "mac": "<hex HMAC-SHA256>"}
The MAC is over the UTF-8 bytes of `doc` exactly as sent (no canonical JSON to agree on),
keyed with config_key(unit key), so only the holder of the unit's key (the backend) can
configure it. `version` must increase: a captured older configuration cannot be replayed."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from firmware import mac
from home_unit import presence
from home_unit.mqtt_link import BrokerList

_CONFIG_LABEL = b"tagwatch config v1"
MAX_TAGS = 64
MAX_PAYLOAD = 64 * 1024

DeviceId = Annotated[int, Field(ge=1, le=0xFFFFFFFF)]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ConfigRefused(ValueError):
    """A pushed configuration the unit will not use; the old one stays in force."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


def config_key(unit_key: bytes) -> bytes:
    return mac.derive(unit_key, _CONFIG_LABEL)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PairedTag(_Strict):
    tag: DeviceId
    beacon_key: str  # 64 hex digits: firmware.beacon.beacon_key(tag key)

    @field_validator("beacon_key")
    @classmethod
    def _hex32(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("beacon_key must be 64 lower-case hex digits")
        return v

    def key(self) -> bytes:
        return bytes.fromhex(self.beacon_key)


class CurfewWindow(_Strict):
    """Shown on the unit's display; the backend's curfew rule is the authority."""

    tag: DeviceId
    days: list[Day] = Field(min_length=1)
    start: str  # local civil time HH:MM
    end: str  # HH:MM; an end at or before the start runs past midnight
    tz: str = "Europe/London"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("time must be HH:MM (24 h)")
        return v

    @field_validator("tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v


class ThresholdSettings(_Strict):
    enter_dbm: int = Field(default=-75, ge=-127, le=20)
    exit_dbm: int = Field(default=-85, ge=-127, le=20)
    away_timeout_s: float = Field(default=90.0, gt=0, le=86400)
    smoothing: float = Field(default=0.5, gt=0, le=1)
    lease_s: int = Field(default=120, ge=1, le=0xFFFF)  # written into every home ack

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdSettings:
        if self.exit_dbm > self.enter_dbm:
            raise ValueError("exit_dbm must not be above enter_dbm (hysteresis)")
        return self

    def presence(self) -> presence.Thresholds:
        return presence.Thresholds(
            self.enter_dbm, self.exit_dbm, float(self.away_timeout_s), float(self.smoothing)
        )


class UnitConfig(_Strict):
    unit: DeviceId
    version: int = Field(ge=1)
    issued: int = Field(ge=0)  # Unix seconds, when the backend signed it
    tags: list[PairedTag] = Field(default_factory=list, max_length=MAX_TAGS)
    curfews: list[CurfewWindow] = Field(default_factory=list)
    thresholds: ThresholdSettings = Field(default_factory=ThresholdSettings)
    # The brokers to use from now on ("host:port", in order); empty: keep the local list.
    brokers: BrokerList = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> UnitConfig:
        ids = [t.tag for t in self.tags]
        if len(set(ids)) != len(ids):
            raise ValueError("a tag is listed twice")
        for c in self.curfews:
            if c.tag not in ids:
                raise ValueError(f"curfew for tag {c.tag}, which is not paired")
        return self

    def beacon_keys(self) -> dict[int, bytes]:
        return {t.tag: t.key() for t in self.tags}


def sign(doc: UnitConfig | dict[str, object], unit_key: bytes) -> bytes:
    """The MQTT payload for a configuration (what the backend publishes, retained)."""
    body = doc.model_dump_json() if isinstance(doc, UnitConfig) else json.dumps(doc)
    tag = mac.hmac_sha256(config_key(unit_key), body.encode()).hex()
    return json.dumps({"doc": body, "mac": tag}).encode()


def open_payload(payload: bytes, unit: int, unit_key: bytes) -> UnitConfig:
    """Authenticate and validate a pushed configuration; raises ConfigRefused with a reason
    (size, envelope, mac, json, schema, unit). Version ordering is the caller's: it knows the
    version in force."""
    if len(payload) > MAX_PAYLOAD:
        raise ConfigRefused("size", f"{len(payload)} bytes")
    try:
        env = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigRefused("envelope", str(e)) from e
    if (
        not isinstance(env, dict)
        or set(env) != {"doc", "mac"}
        or not isinstance(env["doc"], str)
        or not isinstance(env["mac"], str)
    ):
        raise ConfigRefused("envelope", 'expected {"doc": str, "mac": str}')
    body = env["doc"].encode()
    want = mac.hmac_sha256(config_key(unit_key), body)
    try:
        got = bytes.fromhex(env["mac"])
    except ValueError as e:
        raise ConfigRefused("mac", "not hex") from e
    if not mac.equal(want, got):
        raise ConfigRefused("mac", "does not verify with this unit's key")
    try:
        cfg = UnitConfig.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = "json" if first["type"] == "json_invalid" else "schema"
        raise ConfigRefused(reason, f"{where}: {first['msg']}") from e
    if cfg.unit != unit:
        raise ConfigRefused("unit", f"document is for unit {cfg.unit}")
    return cfg
