"""The device registry: tags and home units, their keys (encrypted at rest with the server
key) and pairing. Registering a device generates its 32-byte key, or accepts the key a
provisioning station wrote to the device."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, insert, select, update

from backend.clock import Clock, SystemClock
from backend.settings import Settings
from backend.storage.schema import HOME_UNIT, TAG, devices

KEY_LEN = 32
KINDS = (TAG, HOME_UNIT)
_NONCE_LEN = 12


class RegistryError(ValueError):
    pass


def load_server_key(settings: Settings) -> bytes:
    """The server key from TAGWATCH_SERVER_KEY, TAGWATCH_SERVER_KEY_FILE, or a key file
    created in the data directory on first use (readable by its owner only)."""
    if settings.server_key:
        text = settings.server_key.strip()
    else:
        path = settings.server_key_file or settings.data_dir / "server.key"
        if not path.exists() and settings.server_key_file is None:
            _create_key_file(path)
        try:
            text = path.read_text().strip()
        except OSError as e:
            raise RegistryError(f"cannot read the server key file {path}: {e}") from e
    try:
        key = bytes.fromhex(text)
    except ValueError as e:
        raise RegistryError("the server key must be 64 hex digits") from e
    if len(key) != KEY_LEN:
        raise RegistryError(f"the server key must be {KEY_LEN} bytes, got {len(key)}")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(KEY_LEN) + "\n")


class KeyVault:
    """AES-256-GCM under the server key. The device id is bound in as associated data, so a
    key blob copied onto another device's row does not decrypt."""

    def __init__(self, server_key: bytes) -> None:
        if len(server_key) != KEY_LEN:
            raise RegistryError(f"server key must be {KEY_LEN} bytes")
        self._aead = AESGCM(server_key)

    @staticmethod
    def _aad(device: int) -> bytes:
        return b"tagwatch device key v1:%d" % device

    def seal(self, device: int, key: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, key, self._aad(device))

    def open(self, device: int, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:_NONCE_LEN], blob[_NONCE_LEN:], self._aad(device))
        except InvalidTag as e:
            raise RegistryError(
                f"the key of device {device} does not decrypt: wrong server key?"
            ) from e


@dataclass(frozen=True)
class Device:
    id: int
    kind: str
    key: bytes = b""
    home_unit: int | None = None
    retired: bool = False

    def __repr__(self) -> str:  # never print a key
        return f"Device(id={self.id}, kind={self.kind!r}, home_unit={self.home_unit})"


class Registry:
    def __init__(self, engine: Engine, vault: KeyVault, clock: Clock | None = None) -> None:
        self.engine = engine
        self.vault = vault
        self.clock = clock or SystemClock()

    def register(
        self, device_id: int, kind: str, key: bytes | None = None, home_unit: int | None = None
    ) -> Device:
        """Register a device; returns it with its key (generated unless given)."""
        if kind not in KINDS:
            raise RegistryError(f"kind must be one of {KINDS}, not {kind!r}")
        if not 0 < device_id <= 0xFFFFFFFF:
            raise RegistryError(f"device id {device_id} is outside 1..4294967295")
        if key is None:
            key = secrets.token_bytes(KEY_LEN)
        if len(key) != KEY_LEN:
            raise RegistryError(f"a device key is {KEY_LEN} bytes, got {len(key)}")
        if home_unit is not None:
            self._check_home_unit(home_unit, kind)
        with self.engine.begin() as conn:
            if conn.execute(select(devices.c.id).where(devices.c.id == device_id)).first():
                raise RegistryError(f"device {device_id} is already registered")
            conn.execute(
                insert(devices).values(
                    id=device_id,
                    kind=kind,
                    key_enc=self.vault.seal(device_id, key),
                    home_unit=home_unit,
                    registered_at=self.clock.now(),
                )
            )
        return Device(device_id, kind, key, home_unit)

    def _check_home_unit(self, home_unit: int, kind: str) -> None:
        if kind != TAG:
            raise RegistryError("only a tag is paired with a home unit")
        unit = self.get(home_unit)
        if unit is None or unit.kind != HOME_UNIT:
            raise RegistryError(f"home unit {home_unit} is not registered")

    def pair(self, tag: int, home_unit: int | None) -> None:
        """Pair a tag with a home unit (None unpairs)."""
        dev = self.get(tag)
        if dev is None or dev.kind != TAG:
            raise RegistryError(f"tag {tag} is not registered")
        if home_unit is not None:
            self._check_home_unit(home_unit, TAG)
        with self.engine.begin() as conn:
            conn.execute(update(devices).where(devices.c.id == tag).values(home_unit=home_unit))

    def retire(self, device_id: int) -> None:
        """A retired device's frames are refused (as an unknown device's are)."""
        with self.engine.begin() as conn:
            n = conn.execute(
                update(devices).where(devices.c.id == device_id).values(retired_at=self.clock.now())
            ).rowcount
        if n != 1:
            raise RegistryError(f"device {device_id} is not registered")

    def get(self, device_id: int) -> Device | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
        if row is None:
            return None
        return Device(
            row.id,
            row.kind,
            self.vault.open(row.id, row.key_enc),
            row.home_unit,
            row.retired_at is not None,
        )

    def all(self, include_retired: bool = False) -> list[Device]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(devices).order_by(devices.c.id)).all()
        return [
            Device(r.id, r.kind, self.vault.open(r.id, r.key_enc), r.home_unit, False)
            for r in rows
            if include_retired or r.retired_at is None
        ]
