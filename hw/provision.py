"""Give a board its identity: register the device with the backend (which generates and keeps
its key), write the device config (id, key, server, home-unit pairing, settings) onto the
board, verify it by hash, and make a label line for the case.

The key is generated here and goes into the config bytes written to the board and into the
registry (encrypted with the server key), as `tagwatch backend register --key` does. It is
never printed, logged, put in an exception message or returned to the caller. The device is
registered only once its config is on the board and verified.

The backend is reached through `Registrar`. `LocalRegistrar` uses the device registry the
way `tagwatch backend register` does (TAGWATCH_DATABASE_URL and the server key from the
backend settings); an HTTP client for the API's device route can implement the same
interface when the API offers one."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from firmware import config as fwconfig
from firmware.brokers import endpoint
from hw import boarddef
from hw import image as img
from hw.flash import write_verified
from hw.link import Board

KEY_LEN = 32  # bytes, as backend/registry.py keeps them


class ProvisionError(ValueError):
    pass


@dataclass(frozen=True)
class Enrolment:
    """What the backend said about the new device. `key` is for the board only."""

    device: int
    home_unit: int | None
    key: bytes = field(repr=False)


class Registrar(Protocol):
    def check(self, device: int, home_unit: int | None) -> None:
        """ProvisionError if the device cannot be enrolled (id taken, no such home unit)."""

    def enrol(self, device: int, home_unit: int | None, key: bytes) -> Enrolment:
        """Register the device with the key written to it."""


class LocalRegistrar:
    """The backend registry itself (backend/registry.py), from the backend's settings."""

    def __init__(self) -> None:
        from backend.registry import KeyVault, Registry, load_server_key
        from backend.settings import Settings
        from backend.storage.database import make_engine, upgrade

        settings = Settings()
        self.engine = make_engine(settings.resolved_database_url())
        upgrade(self.engine)
        self.registry = Registry(self.engine, KeyVault(load_server_key(settings)))

    def check(self, device: int, home_unit: int | None) -> None:
        from backend.storage.schema import HOME_UNIT

        if not 0 < device <= 0xFFFFFFFF:
            raise ProvisionError(f"device id {device} is outside 1..4294967295")
        if self.registry.get(device) is not None:
            raise ProvisionError(f"device {device} is already registered")
        if home_unit is not None:
            unit = self.registry.get(home_unit)
            if unit is None or unit.kind != HOME_UNIT:
                raise ProvisionError(f"home unit {home_unit} is not registered")

    def enrol(self, device: int, home_unit: int | None, key: bytes) -> Enrolment:
        from backend.registry import RegistryError
        from backend.storage.schema import TAG

        try:
            dev = self.registry.register(device, TAG, key, home_unit)
        except RegistryError as e:
            raise ProvisionError(str(e)) from e
        return Enrolment(dev.id, dev.home_unit, dev.key)

    def close(self) -> None:
        self.engine.dispose()


def parse_server(server: str) -> tuple[str, int]:
    """HOST:PORT as the firmware checks a broker endpoint (firmware.brokers.endpoint)."""
    try:
        return endpoint(server)
    except ValueError:
        raise ProvisionError(f"server must be HOST:PORT, got {server!r}") from None


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE firmware settings, typed as firmware/config.py's defaults are."""
    out: dict[str, Any] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or k not in fwconfig.DEFAULTS or k in ("device", "key", "board"):
            raise ProvisionError(f"--set {pair!r}: not a firmware setting")
        default = fwconfig.DEFAULTS[k]
        try:
            out[k] = int(v) if isinstance(default, int) else v
        except ValueError as e:
            raise ProvisionError(f"--set {pair!r}: {k} must be an integer") from e
    return out


def device_config(
    board: str, enrolment: Enrolment, servers: str | list[str], settings: dict[str, Any]
) -> bytes:
    """config.json for the board, checked by the firmware's own config loader. `servers` are
    the brokers in the order the tag tries them (docs/protocol.md, "Brokers and login"). The
    tag logs in as `tag-<id>` with a password it derives from its key at boot
    (firmware.brokers.password), the one `tagwatch backend broker-config` writes for it,
    so no second secret is provisioned or stored."""
    servers = [servers] if isinstance(servers, str) else servers
    if not servers:
        raise ProvisionError("give at least one --server HOST:PORT")
    brokers = []
    for server in servers:
        host, port = parse_server(server)
        brokers.append(f"{host}:{port}")
    cfg: dict[str, Any] = {
        "board": boarddef.firmware_board(boarddef.load(board)),
        "device": enrolment.device,
        "key": enrolment.key.hex(),
        "brokers": brokers,
    }
    if enrolment.home_unit is not None:
        # The RF home mode reads the pairing as `home_unit` once firmware/config.py has it;
        # until then it travels as a board_* key, which the config loader passes through.
        cfg["home_unit" if "home_unit" in fwconfig.DEFAULTS else "board_home_unit"] = (
            enrolment.home_unit
        )
    cfg.update(settings)
    try:
        fwconfig.merge(cfg)
    except fwconfig.ConfigError as e:
        raise ProvisionError(f"the firmware would refuse this config: {e}") from None
    return json.dumps(cfg, sort_keys=True).encode()


def label(board: str, enrolment: Enrolment, when: datetime | None = None) -> str:
    """One line for the case label: no key, nothing that derives from it."""
    when = when or datetime.now(UTC)
    home = f"home unit {enrolment.home_unit}" if enrolment.home_unit is not None else "no home unit"
    return f"tagwatch tag {enrolment.device} | board {board} | {home} | {when:%Y-%m-%d}"


@dataclass(frozen=True)
class ProvisionResult:
    device: int
    label: str
    config_sha256: str  # of the config written (it holds the key, so only its hash is kept)


def provision(
    board: Board,
    board_name: str,
    registrar: Registrar,
    device: int,
    server: str | list[str],
    home_unit: int | None = None,
    settings: dict[str, Any] | None = None,
    reset: bool = True,
) -> ProvisionResult:
    """Check the enrolment, reach the board, generate the key, write and verify the config,
    then register the device with that key, and reset the board to run with it. A board that
    cannot be reached or written leaves nothing registered."""
    registrar.check(device, home_unit)
    planned = Enrolment(device, home_unit, secrets.token_bytes(KEY_LEN))
    data = device_config(board_name, planned, server, settings or {})
    board.enter()
    write_verified(board, {img.CONFIG_NAME: data})
    enrolment = registrar.enrol(device, home_unit, planned.key)
    if reset:
        board.soft_reset()
    return ProvisionResult(device, label(board_name, enrolment), hashlib.sha256(data).hexdigest())
