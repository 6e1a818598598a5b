"""The home unit's durable state in one SQLite file (docs/home-unit.md, "Offline queue").

WAL with synchronous=FULL: a commit is on disk when it returns, and a power cut (or kill -9)
mid-write leaves either the whole transaction or none of it. What lives here:
- queue: tag frames to relay and the unit's own HOME_DATA frames, in arrival order, kept
  until the backend's ACK names them; unique on (kind, device, boot, seq) so a frame the tag
  offers twice is stored once.
- downlink: COMMAND frames from the backend waiting for their tag's next contact.
- tag_ack: the backend's ACK frames for each tag, remembered (bounded per tag) with the
  ranges they name, so that a frame the tag offers again after the backend acknowledged it
  is answered with the ACK instead of being relayed twice; an ACK is forgotten once the tag
  no longer holds any frame it names.
- tags: the last accepted beacon counter per tag (replay rejection survives restarts) and
  its presence as last reported (an away that happens while the unit is down is still seen).
- config: the last accepted pushed configuration, so the unit runs without the broker.
- meta: the boot counter and the overflow count not yet reported.
Only the daemon's event-loop thread uses the connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

RELAY = 0  # a tag's TAG_DATA frame, relayed unmodified to topics.home_relay
OWN = 1  # the unit's own HOME_DATA frame, published to topics.home_up

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    device INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    received REAL NOT NULL,
    UNIQUE (kind, device, boot, seq)
);
CREATE TABLE IF NOT EXISTS downlink (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag INTEGER NOT NULL,
    data BLOB NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS downlink_tag ON downlink (tag, id);
CREATE TABLE IF NOT EXISTS tag_ack (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag INTEGER NOT NULL,
    data BLOB NOT NULL,
    ranges TEXT NOT NULL,
    received REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tag_ack_tag ON tag_ack (tag, id);
CREATE TABLE IF NOT EXISTS tags (
    tag INTEGER PRIMARY KEY,
    counter INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT -1,
    last_kept REAL,
    rssi INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Queued:
    id: int
    kind: int
    device: int
    boot: int
    seq: int
    data: bytes


@dataclass(frozen=True)
class KnownAck:
    """A backend ACK for a tag, as the unit remembers it: the frame to hand the tag and the
    (boot, first, last) ranges it names."""

    id: int
    data: bytes
    ranges: tuple[tuple[int, int, int], ...]
    writes: int  # contacts it was written to the tag in


def _ranges_text(ranges: Iterable[tuple[int, int, int]]) -> str:
    return " ".join(f"{b}:{f}-{la}" for b, f, la in ranges)


def _ranges_parse(text: str) -> tuple[tuple[int, int, int], ...]:
    out = []
    for item in text.split():
        boot, _, span = item.partition(":")
        first, _, last = span.partition("-")
        out.append((int(boot), int(first), int(last)))
    return tuple(out)


@dataclass(frozen=True)
class TagState:
    tag: int
    counter: int
    state: int
    last_kept: float | None
    rssi: int


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode; every change below is one explicit transaction.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- meta --------------------------------------------------------------------------
    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def next_boot(self) -> int:
        """Increment and return the boot counter; committed before any frame of the boot."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            boot = self._meta("boot") + 1
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('boot', ?)", (boot,))
        return boot

    def overflow_unreported(self) -> int:
        return self._meta("overflow")

    def _add_overflow(self, n: int) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('overflow', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (n,),
        )

    # -- queue -------------------------------------------------------------------------
    def count(self, kind: int | None = None) -> int:
        if kind is None:
            row = self.db.execute("SELECT count(*) FROM queue").fetchone()
        else:
            row = self.db.execute("SELECT count(*) FROM queue WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def enqueue(
        self,
        kind: int,
        frames: Iterable[tuple[int, int, int, bytes]],
        now: float,
        limit: int,
    ) -> tuple[int, int, int]:
        """Store (device, boot, seq, data) frames in one transaction, at most `limit` of this
        kind in the queue. Returns (stored, already queued, refused for lack of room); the
        refused are added to the overflow count in the same transaction."""
        stored = dup = refused = 0
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            room = limit - int(
                self.db.execute("SELECT count(*) FROM queue WHERE kind = ?", (kind,)).fetchone()[0]
            )
            for device, boot, seq, data in frames:
                if room <= 0:
                    exists = self.db.execute(
                        "SELECT 1 FROM queue WHERE kind=? AND device=? AND boot=? AND seq=?",
                        (kind, device, boot, seq),
                    ).fetchone()
                    if exists:
                        dup += 1
                    else:
                        refused += 1
                    continue
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO queue (kind, device, boot, seq, data, received) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (kind, device, boot, seq, data, now),
                )
                if cur.rowcount:
                    stored += 1
                    room -= 1
                else:
                    dup += 1
            if refused:
                self._add_overflow(refused)
        return stored, dup, refused

    def enqueue_overflow_report(
        self, device: int, boot: int, seq: int, data: bytes, now: float, reported: int
    ) -> None:
        """Store an own frame carrying an overflow record and take `reported` off the count,
        atomically: the count is neither reported twice nor lost."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO queue (kind, device, boot, seq, data, received) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (OWN, device, boot, seq, data, now),
            )
            self.db.execute(
                "UPDATE meta SET value = max(0, value - ?) WHERE key = 'overflow'", (reported,)
            )

    def pending(self, after_id: int, limit: int) -> list[Queued]:
        """Queued frames in arrival order, after `after_id`."""
        rows = self.db.execute(
            "SELECT id, kind, device, boot, seq, data FROM queue WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [Queued(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]

    def get(self, ids: Iterable[int]) -> list[Queued]:
        out = []
        for i in ids:
            r = self.db.execute(
                "SELECT id, kind, device, boot, seq, data FROM queue WHERE id = ?", (i,)
            ).fetchone()
            if r:
                out.append(Queued(r[0], r[1], r[2], r[3], r[4], bytes(r[5])))
        return out

    def free(self, kind: int, device: int, ranges: Iterable[tuple[int, int, int]]) -> list[int]:
        """Delete the frames an ACK names (boot, first, last inclusive); returns their ids."""
        freed: list[int] = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for boot, first, last in ranges:
                rows = self.db.execute(
                    "DELETE FROM queue WHERE kind=? AND device=? AND boot=? AND seq BETWEEN ? AND ?"
                    " RETURNING id",
                    (kind, device, boot, first, last),
                ).fetchall()
                freed.extend(int(r[0]) for r in rows)
        return freed

    # -- downlinks ---------------------------------------------------------------------
    def add_downlink(self, tag: int, data: bytes, now: float, limit: int) -> int:
        """Keep a command for the tag's next contact; the oldest beyond `limit` per tag are
        dropped (returned count): they reach the tag only over its own cellular link."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO downlink (tag, data, received) VALUES (?, ?, ?)", (tag, data, now)
            )
            cur = self.db.execute(
                "DELETE FROM downlink WHERE tag = ? AND id NOT IN "
                "(SELECT id FROM downlink WHERE tag = ? ORDER BY id DESC LIMIT ?)",
                (tag, tag, limit),
            )
            return cur.rowcount

    def downlinks(self, tag: int) -> list[tuple[int, bytes]]:
        rows = self.db.execute(
            "SELECT id, data FROM downlink WHERE tag = ? ORDER BY id", (tag,)
        ).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def drop_downlink(self, ident: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM downlink WHERE id = ?", (ident,))

    # -- remembered ACKs -----------------------------------------------------------------
    def remember_ack(
        self,
        tag: int,
        data: bytes,
        ranges: Iterable[tuple[int, int, int]],
        now: float,
        limit: int,
    ) -> int:
        """Remember a backend ACK for the tag; the oldest beyond `limit` per tag are forgotten
        (returned count)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO tag_ack (tag, data, ranges, received) VALUES (?, ?, ?, ?)",
                (tag, data, _ranges_text(ranges), now),
            )
            cur = self.db.execute(
                "DELETE FROM tag_ack WHERE tag = ? AND id NOT IN "
                "(SELECT id FROM tag_ack WHERE tag = ? ORDER BY id DESC LIMIT ?)",
                (tag, tag, limit),
            )
            return cur.rowcount

    def known_acks(self, tag: int) -> list[KnownAck]:
        """The tag's remembered ACKs, oldest first."""
        rows = self.db.execute(
            "SELECT id, data, ranges, delivered FROM tag_ack WHERE tag = ? ORDER BY id", (tag,)
        ).fetchall()
        return [KnownAck(int(r[0]), bytes(r[1]), _ranges_parse(r[2]), int(r[3])) for r in rows]

    def ack_written(self, ident: int) -> None:
        with self.db:
            self.db.execute("UPDATE tag_ack SET delivered = delivered + 1 WHERE id = ?", (ident,))

    def forget_acks(self, ids: Iterable[int]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM tag_ack WHERE id = ?", [(i,) for i in ids])

    # -- tags --------------------------------------------------------------------------
    def tag_states(self) -> dict[int, TagState]:
        rows = self.db.execute("SELECT tag, counter, state, last_kept, rssi FROM tags").fetchall()
        return {r[0]: TagState(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def save_beacon(
        self, tag: int, counter: int, state: int, last_kept: float | None, rssi: int
    ) -> None:
        """An accepted beacon: its counter (replay rejection across restarts) and the tag's
        presence, in one commit."""
        with self.db:
            self.db.execute(
                "INSERT INTO tags (tag, counter, state, last_kept, rssi) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tag) DO UPDATE SET counter = max(tags.counter, excluded.counter), "
                "state = excluded.state, last_kept = excluded.last_kept, rssi = excluded.rssi",
                (tag, counter, state, last_kept, rssi),
            )

    def save_presence(self, tag: int, state: int, last_kept: float | None, rssi: int) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO tags (tag, counter, state, last_kept, rssi) VALUES (?, -1, ?, ?, ?) "
                "ON CONFLICT (tag) DO UPDATE SET state = excluded.state, "
                "last_kept = excluded.last_kept, rssi = excluded.rssi",
                (tag, state, last_kept, rssi),
            )

    # -- config ------------------------------------------------------------------------
    def config(self) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT version, payload FROM config WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def save_config(self, version: int, payload: bytes) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO config (id, version, payload) VALUES (1, ?, ?)",
                (version, payload),
            )
