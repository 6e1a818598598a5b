"""The storage schema, one definition for SQLite and PostgreSQL (Alembic migrations in
migrations/ create exactly this; a test compares them).

Times: device event times (`t`, `ts`) are integer Unix seconds as the device sent them;
backend times (`received_at`, `at`) are float Unix seconds from the backend clock.
Locations are integers in 1e-7 degree, as on the wire, so nothing is rounded twice."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Naming convention so that constraint names are the same on both engines and in migrations.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# An auto-incrementing surrogate key: a rowid alias on SQLite (costs no index), bigint
# identity on PostgreSQL.
RowId = BigInteger().with_variant(Integer(), "sqlite")

TAG = "tag"
HOME_UNIT = "home_unit"

devices = Table(
    "devices",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # the wire device id
    Column("kind", String(16), nullable=False),  # TAG or HOME_UNIT
    # nonce + AES-GCM ciphertext of the 32-byte device key under the server key
    Column("key_enc", LargeBinary, nullable=False),
    Column("home_unit", BigInteger, nullable=True),  # pairing: a tag's home unit
    Column("registered_at", Double, nullable=False),
    Column("retired_at", Double, nullable=True),
    # High-water marks kept by ingest: newest event time stored, last arrival.
    Column("last_event_at", BigInteger, nullable=True),
    Column("last_seen_at", Double, nullable=True),
)

# Every accepted frame, raw, for evidence; (device, boot, seq) makes ingest idempotent.
frames = Table(
    "frames",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, nullable=False),
    Column("boot", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("mtype", SmallInteger, nullable=False),
    Column("flags", SmallInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("received_at", Double, nullable=False),
    Column("via_unit", BigInteger, nullable=True),  # the home unit that relayed it
    Column("late", Boolean, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    UniqueConstraint("device", "boot", "seq"),
)

# Size of the spatial cell, in 1e-7 degree: 0.01 degree (~1.1 km north-south, ~0.7 km
# east-west at 50 N). docs/scaling.md has the measurement that chose it.
CELL_E7 = 100_000
_LON_CELLS = 2 * 1_800_000_000 // CELL_E7 + 1


def cell_of(lat_e7: int, lon_e7: int) -> int:
    """The grid cell of a point: one integer, indexed with time for radius queries."""
    return (lat_e7 // CELL_E7 + 900_000_000 // CELL_E7) * _LON_CELLS + (
        lon_e7 // CELL_E7 + 1_800_000_000 // CELL_E7
    )


positions = Table(
    "positions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("lat_e7", Integer, nullable=False),
    Column("lon_e7", Integer, nullable=False),
    Column("cell", Integer, nullable=False),
    Column("acc_dm", Integer, nullable=False),
    Column("fix_type", SmallInteger, nullable=False),
    Column("source", SmallInteger, nullable=False),
    Column("sats", SmallInteger, nullable=False),
    Column("speed_cms", Integer, nullable=False),
    Column("course_cd", Integer, nullable=False),
    Column("hdop_d", SmallInteger, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("frame_id", BigInteger, nullable=False),
    Column("idx", SmallInteger, nullable=False),  # record index within the frame
    # A subject's trail in a time range.
    Index(None, "device", "ts"),
    # Everyone within R metres of a point in a time window: cells covering the circle.
    Index(None, "cell", "ts"),
)

# Everything else a device reports (tamper, battery, mode, link, ...), one row per record.
# t is NULL for a frame without TIME_VALID (seconds since boot are kept in data).
device_events = Table(
    "device_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("data", JSON, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("frame_id", BigInteger, nullable=False),
    Column("idx", SmallInteger, nullable=False),
    Index(None, "device", "ts"),
)

# Home-unit presence reports: a tag at home (state 1) or away (0), with the RSSI heard.
presence = Table(
    "presence",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("home_unit", BigInteger, nullable=False),
    Column("tag", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=True),
    Column("state", SmallInteger, nullable=False),
    Column("rssi", SmallInteger, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("frame_id", BigInteger, nullable=False),
    Index(None, "tag", "ts"),
)

# Rejected input that may be an attack: bad MAC, unknown device, replay, malformed frames.
security_events = Table(
    "security_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("device", BigInteger, nullable=True),
    Column("topic", String(255), nullable=False),
    Column("detail", Text, nullable=False),
    Column("raw", LargeBinary, nullable=True),
    Index(None, "device", "at"),
)

# Append-only record of actions on the data (the retention purge writes here). The access
# control issue extends it (hash chain, who read what).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
    # Added by 0002_access: who (user and unit; actor keeps the username or process name),
    # which subjects, what scope, the purpose stated, the request, and the hash chain:
    # hash = SHA-256 over prev_hash and this record's canonical form (backend/security/
    # audit.py), so editing or deleting a record breaks every later hash.
    Column("user_id", BigInteger, nullable=True),
    Column("unit_id", BigInteger, nullable=True),
    Column("subject_ids", JSON, nullable=True),
    Column("scope", String(16), nullable=True),
    Column("purpose", Text, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("prev_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=True),
)

# ---------------------------------------------------------------------------------------
# Access control (issue 7, migration 0002_access): units, users, their sessions, subjects
# and shares. Authorization is by unit: a subject belongs to one unit; another unit sees it
# only through an unexpired, unrevoked share with the scope it needs.

units = Table(
    "units",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    # "police" (a force unit: IOM, MOSOVO) or "partner" (probation, drug intervention team)
    Column("kind", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("name"),
)

users = Table(
    "users",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("display_name", String(100), nullable=False),
    Column("unit_id", BigInteger, ForeignKey("units.id"), nullable=False),
    # administrator, supervisor, officer, partner, auditor (backend/security/roles.py)
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),  # argon2id, PHC string
    # TOTP secret sealed with the server key (AES-GCM), NULL when TOTP is not enrolled.
    Column("totp_enc", LargeBinary, nullable=True),
    Column("totp_confirmed_at", Double, nullable=True),  # enrolment completed
    Column("totp_last_step", BigInteger, nullable=True),  # a code is accepted only once
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", Double, nullable=True),
    Column("disabled_at", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("username"),
)

# One row per login. The access token names its session; logout or disabling the user
# revokes the session, which invalidates the access token at once and the refresh token.
# The refresh token is stored only as its SHA-256 and rotates on every use; presenting an
# already-rotated one revokes the session (it was stolen, or replayed).
auth_sessions = Table(
    "auth_sessions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("refresh_hash", String(64), nullable=False),
    # The refresh token rotated away last: presented again, it proves a copy exists.
    Column("previous_hash", String(64), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("refreshed_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Column("revoked_reason", String(32), nullable=True),
    UniqueConstraint("refresh_hash"),
    Index(None, "user_id"),
    Index(None, "previous_hash"),
)

# The monitored person. The rules/monitoring tables (orders, assignments, ...) reference it.
subjects = Table(
    "subjects",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("reference", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("unit_id", BigInteger, ForeignKey("units.id"), nullable=False),  # owning unit
    Column("risk_notes", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("reference"),
    Index(None, "unit_id"),
)

# A subject shared by its owning unit with another unit: scopes (comma-separated subset of
# live, trail, alerts, reports), the purpose stated when sharing, and an expiry.
shares = Table(
    "shares",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("unit_id", BigInteger, ForeignKey("units.id"), nullable=False),  # shared with
    Column("scopes", String(64), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("created_by", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Index(None, "unit_id", "subject_id"),
    Index(None, "subject_id"),
)
