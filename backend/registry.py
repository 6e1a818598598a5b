"""The device registry: tags, home units and victim devices, their keys (encrypted at rest
with the server key) and pairing. Registering a device generates its 32-byte key, or accepts
the key a provisioning station wrote to the device.

Pairing has a history (`pairings`), because only a tag's paired home unit can speak for the
tag's presence, and a unit's records arrive late (its offline queue): each record is judged
by the pairing in force at the record's own event time (`Pairings.refusals`, used by ingest
before it stores a record and by the rules before they observe one; docs/security.md,
"Presence: only the paired home unit speaks for a tag").

Its writes begin IMMEDIATE (backend/storage/database.py): on SQLite a transaction begun
deferred that reads (is the id free?) and then writes fails at once with "database is
locked" if another connection commits in between, and the registry runs beside the API and
ingest."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, insert, select, update

from backend.clock import Clock, SystemClock
from backend.services.stops import data_stop
from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import HOME_UNIT, TAG, VICTIM, devices, pairings
from firmware import frame as fr

KEY_LEN = 32
KINDS = (TAG, HOME_UNIT, VICTIM)
_NONCE_LEN = 12

# Record types only a home unit sends (docs/protocol.md, HOME_DATA): in a tag's frame they are
# refused, so a tag cannot claim to be at home on a unit's behalf.
HOME_RECORDS = frozenset((fr.PRESENCE, fr.HOME_POWER, fr.HOME_TAMPER, fr.LINK))
# Refusal reasons of single records (ingest's security events; docs/operations.md, "Ingest").
NOT_PAIRED = "not_paired"  # a unit's presence report for a tag it was not paired with then
HOME_RECORD = "home_record"  # a home unit's record in a tag's frame


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
    return key_from_hex(text, "the server key")


def key_from_hex(text: str, what: str) -> bytes:
    """A key (the server's or a device's) from its hex: KEY_LEN bytes, else a sentence naming
    `what` and what was wrong (the parser's own message spoke of fromhex())."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as e:
        raise RegistryError(f"{what} must be {2 * KEY_LEN} hex digits (0-9, a-f)") from e
    if len(key) != KEY_LEN:
        raise RegistryError(f"{what} must be {2 * KEY_LEN} hex digits, got {2 * len(key)}")
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
    # Its data dated from this Unix time on is refused: its wearer withdrew and the
    # equipment came off then (backend/services/stops.py).
    refuse_from: int | None = None

    def __repr__(self) -> str:  # never print a key
        return f"Device(id={self.id}, kind={self.kind!r}, home_unit={self.home_unit})"


@dataclass(frozen=True)
class Pairing:
    """A tag's home unit over [starts_at, ends_at) of event time; None: unbounded."""

    tag: int
    home_unit: int
    starts_at: int | None
    ends_at: int | None

    def covers(self, t: int | None) -> bool:
        """In force at event time t; a record without calendar time (None) is judged by the
        pairing in force now."""
        if t is None:
            return self.ends_at is None
        return (self.starts_at is None or self.starts_at <= t) and (
            self.ends_at is None or t < self.ends_at
        )


@dataclass(frozen=True)
class Refusal:
    """A record of an authentic frame that its sender may not make."""

    idx: int  # the record's index in its frame
    reason: str  # NOT_PAIRED or HOME_RECORD
    detail: str


def presence_tags(records: Iterable[fr.Record]) -> set[int]:
    """The tags the presence records name: whose pairings judging them needs."""
    return {r.tag for r in records if r.type == fr.PRESENCE}


class Pairings:
    """The pairing history of some tags, and the one rule that decides which of a device's
    records about tags stand: a tag's frame carries no home-unit record, and a home unit's
    presence report names itself and a tag paired with it at the report's event time."""

    def __init__(self, spans: Iterable[Pairing] = ()) -> None:
        self._of: dict[int, list[Pairing]] = {}
        for p in spans:
            self._of.setdefault(p.tag, []).append(p)

    @classmethod
    def load(cls, conn: Connection, tags: Iterable[int]) -> Pairings:
        wanted = sorted(set(tags))
        if not wanted:
            return cls()
        rows = conn.execute(select(pairings).where(pairings.c.tag.in_(wanted)))
        return cls(Pairing(r.tag, r.home_unit, r.starts_at, r.ends_at) for r in rows)

    def unit_at(self, tag: int, t: int | None) -> int | None:
        """The home unit paired with tag at event time t, if any."""
        return next((p.home_unit for p in self._of.get(tag, ()) if p.covers(t)), None)

    def refusals(
        self, f: fr.Frame, sender: str, records: Iterable[tuple[int, fr.Record]]
    ) -> list[Refusal]:
        """Which of `records` ((index, record) of frame f, whose MAC verified with the key of
        `sender`, a TAG, HOME_UNIT or VICTIM device) the sender may not make."""
        out: list[Refusal] = []
        timed = f.flags & fr.FLAG_TIME_VALID
        for idx, rec in records:
            if sender in (TAG, VICTIM) and rec.type in HOME_RECORDS:
                out.append(
                    Refusal(idx, HOME_RECORD, f"record {idx}: {rec.name}, a home unit's record")
                )
            elif sender == HOME_UNIT and rec.type == fr.PRESENCE:
                t = f.ts - rec.values[0] if timed else None
                paired = self.unit_at(rec.tag, t)
                if rec.home_unit != f.device or paired != f.device:
                    out.append(
                        Refusal(
                            idx,
                            NOT_PAIRED,
                            f"record {idx}: presence of tag {rec.tag} at {t} naming home unit "
                            f"{rec.home_unit}; the tag's home unit then: {paired}",
                        )
                    )
        return out


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
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
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
            if home_unit is not None:
                self._start_pairing(conn, device_id, home_unit)
        return Device(device_id, kind, key, home_unit)

    def _check_home_unit(self, home_unit: int, kind: str) -> None:
        if kind != TAG:
            raise RegistryError("only a tag is paired with a home unit")
        unit = self.get(home_unit)
        if unit is None or unit.kind != HOME_UNIT:
            raise RegistryError(f"home unit {home_unit} is not registered")

    def pair(self, tag: int, home_unit: int | None) -> None:
        """Pair a tag with a home unit (None unpairs), from now on: the pairing in force
        until now keeps covering the records dated before."""
        dev = self.get(tag)
        if dev is None or dev.kind != TAG:
            raise RegistryError(f"tag {tag} is not registered")
        if home_unit is not None:
            self._check_home_unit(home_unit, TAG)
        if home_unit == dev.home_unit:
            return
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            conn.execute(
                update(pairings)
                .where(pairings.c.tag == tag, pairings.c.ends_at.is_(None))
                .values(ends_at=int(self.clock.now()))
            )
            if home_unit is not None:
                self._start_pairing(conn, tag, home_unit)
            conn.execute(update(devices).where(devices.c.id == tag).values(home_unit=home_unit))

    def _start_pairing(self, conn: Connection, tag: int, home_unit: int) -> None:
        """A tag's first pairing is in force from the start (no unit spoke for it before);
        any later one from now."""
        earlier = conn.execute(select(pairings.c.id).where(pairings.c.tag == tag).limit(1)).first()
        now = self.clock.now()
        conn.execute(
            insert(pairings).values(
                tag=tag,
                home_unit=home_unit,
                starts_at=None if earlier is None else int(now),
                ends_at=None,
                created_at=now,
            )
        )

    def retire(self, device_id: int) -> None:
        """A retired device's frames are refused (as an unknown device's are)."""
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            n = conn.execute(
                update(devices).where(devices.c.id == device_id).values(retired_at=self.clock.now())
            ).rowcount
        if n != 1:
            raise RegistryError(f"device {device_id} is not registered")

    def get(self, device_id: int) -> Device | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
            stop = None if row is None else data_stop(conn, device_id)
        if row is None:
            return None
        return Device(
            row.id,
            row.kind,
            self.vault.open(row.id, row.key_enc),
            row.home_unit,
            row.retired_at is not None,
            stop,
        )

    def all(self, include_retired: bool = False) -> list[Device]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(devices).order_by(devices.c.id)).all()
        return [
            Device(r.id, r.kind, self.vault.open(r.id, r.key_enc), r.home_unit, False)
            for r in rows
            if include_retired or r.retired_at is None
        ]
