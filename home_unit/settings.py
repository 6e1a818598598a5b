"""The home unit's local settings: one file (TOML or JSON) given to
`tagwatch home-unit run --config FILE`, any field overridable by an environment variable
TAGWATCH_HU_<FIELD> (e.g. TAGWATCH_HU_BROKER_HOST). Everything the backend decides (paired
tags, thresholds, curfews) comes instead in the pushed configuration (pushed_config.py).
docs/home-unit.md lists every field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from firmware import brokers
from home_unit.mqtt_link import BrokerList, endpoints


class SettingsError(ValueError):
    pass


class HomeUnitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAGWATCH_HU_", extra="forbid")

    unit: int = Field(ge=1, le=0xFFFFFFFF)
    # The unit's 32-byte provisioned key: inline hex, or a file holding the hex (root-only).
    key_hex: str | None = None
    key_file: Path | None = None
    state_db: Path = Path("/var/lib/tagwatch-home-unit/state.db")

    broker_host: str = "127.0.0.1"
    broker_port: int = Field(default=1883, ge=1, le=65535)
    # Several brokers ("host:port", tried in this order; docs/home-unit.md, "Brokers"):
    # when given, broker_host/broker_port are not used. The pushed configuration can
    # replace the list.
    brokers: BrokerList = Field(default_factory=list)
    # The broker login: by default the unit's device account, `hu-<unit>` with the password
    # derived from its key (firmware.brokers.password), as the generated password file
    # has it.
    username: str | None = None
    password: str | None = None
    keepalive_s: int = Field(default=30, ge=5)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    session_expiry_s: int = Field(default=7 * 86400, ge=0)

    radio: Literal["ble", "sim"] = "ble"
    ble_adapter: str | None = None  # e.g. "hci0"; None: BlueZ's default
    ble_connect_timeout_s: float = Field(default=10.0, gt=0)
    sim_radio: str = "127.0.0.1:7300"  # host:port of the simulator's radio socket
    clock: Literal["wall", "sim"] = "wall"  # "sim": the simulator radio sets the time

    heartbeat_s: float = Field(default=300.0, gt=0)
    poll_s: float = Field(default=0.2, gt=0)
    relay_window: int = Field(default=64, ge=1, le=65000)
    resend_after_s: float = Field(default=120.0, gt=0)
    max_relay_frames: int = Field(default=100_000, ge=1)
    max_own_frames: int = Field(default=20_000, ge=1)
    max_downlinks_per_tag: int = Field(default=32, ge=1)  # commands held for a tag
    max_acks_per_tag: int = Field(default=1024, ge=1)  # backend ACKs remembered for a tag
    # Downlink frames written in one contact: a tag keeps at most 8 for its next poll
    # (docs/home-unit.md, "GATT contract"); the rest wait for the next contact.
    max_downlinks_per_contact: int = Field(default=8, ge=1)

    power_supply_dir: Path | None = None  # e.g. /sys/class/power_supply
    moved_file: Path | None = None
    case_file: Path | None = None
    sensor_poll_s: float = Field(default=1.0, gt=0)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @field_validator("key_hex")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("key_hex must be 64 hex digits (32 bytes)")
        return v

    @field_validator("sim_radio")
    @classmethod
    def _hostport(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("sim_radio must be host:port")
        return v

    @model_validator(mode="after")
    def _one_key(self) -> HomeUnitSettings:
        if (self.key_hex is None) == (self.key_file is None):
            raise ValueError("give exactly one of key_hex and key_file")
        return self

    def key(self) -> bytes:
        if self.key_hex is not None:
            return bytes.fromhex(self.key_hex)
        assert self.key_file is not None
        try:
            text = self.key_file.read_text().strip()
        except OSError as e:
            raise SettingsError(f"cannot read key_file {self.key_file}: {e}") from e
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise SettingsError(f"key_file {self.key_file} must hold 64 hex digits")
        return bytes.fromhex(text)

    def broker_list(self) -> list[tuple[str, int]]:
        """Where to connect, in order."""
        if not self.brokers:
            return [(self.broker_host, self.broker_port)]
        return endpoints(self.brokers)

    def login(self) -> tuple[str, str]:
        """(username, password) at the broker."""
        return (
            self.username or f"hu-{self.unit}",
            self.password if self.password is not None else brokers.password(self.key()),
        )

    def sim_address(self) -> tuple[str, int]:
        host, _, port = self.sim_radio.rpartition(":")
        return host, int(port)


def load(path: Path) -> HomeUnitSettings:
    """Settings from a .toml or .json file, environment variables taking precedence.
    Raises SettingsError with a readable reason."""
    if not path.is_file():
        raise SettingsError(f"settings file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise SettingsError(f"settings file must be .toml or .json, not {suffix or 'no suffix'}")

    class _FromFile(HomeUnitSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            source: PydanticBaseSettingsSource = (
                TomlConfigSettingsSource(settings_cls, toml_file=path)
                if suffix == ".toml"
                else JsonConfigSettingsSource(settings_cls, json_file=path)
            )
            return (init_settings, env_settings, source)

    try:
        loaded = _FromFile()  # type: ignore[call-arg]  # the fields come from the file
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in e.errors()
        )
        raise SettingsError(f"{path}: {problems}") from e
    except ValueError as e:  # unparseable TOML/JSON
        raise SettingsError(f"{path}: {e}") from e
    return HomeUnitSettings.model_validate(loaded.model_dump())
