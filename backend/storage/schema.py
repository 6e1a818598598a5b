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
VICTIM = "victim"  # a victim's own device (a phone or a small GPS unit), linked to an order

devices = Table(
    "devices",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # the wire device id
    Column("kind", String(16), nullable=False),  # TAG, HOME_UNIT or VICTIM
    # nonce + AES-GCM ciphertext of the 32-byte device key under the server key
    Column("key_enc", LargeBinary, nullable=False),
    Column("home_unit", BigInteger, nullable=True),  # pairing: a tag's home unit
    Column("registered_at", Double, nullable=False),
    Column("retired_at", Double, nullable=True),
    # High-water marks kept by ingest: newest event time stored, last arrival.
    Column("last_event_at", BigInteger, nullable=True),
    Column("last_seen_at", Double, nullable=True),
)

# Pairing history: a tag's home unit over [starts_at, ends_at) of event time (Unix s, the
# backend clock when the pairing was made or ended; starts_at NULL: the tag's first pairing,
# in force from the start). devices.home_unit is the pairing in force now. A home unit's
# record about a tag is accepted only under the pairing in force at the record's own time
# (backend/registry.py, Pairings).
pairings = Table(
    "pairings",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("tag", BigInteger, ForeignKey("devices.id"), nullable=False),
    Column("home_unit", BigInteger, ForeignKey("devices.id"), nullable=False),
    Column("starts_at", BigInteger, nullable=True),
    Column("ends_at", BigInteger, nullable=True),
    Column("created_at", Double, nullable=False),
    Index(None, "tag", "starts_at"),
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

# Append-only record of actions on the data: the retention purge and every read or
# disclosure of location data (who, what, when, purpose), hash-chained so that an edit or a
# deletion shows (backend/security/audit.py).
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
# Access control (migration 0002_access): units, users, their sessions, subjects
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
    # A secret being enrolled (sealed the same way): it replaces totp_enc only when a code
    # from it is confirmed, so starting again never weakens a confirmed second factor.
    Column("totp_pending_enc", LargeBinary, nullable=True),
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

# ---------------------------------------------------------------------------------------
# Monitoring (migration 0003_monitoring): what a subject is ordered to do, what they
# wear, their curfews, zones and charging schedule; the alerts the rules raise and their
# workflow; the rule engine's state. Event times (starts_at, start, end...) are integer Unix
# seconds like device times; backend times (created_at, raised_at...) are float.

# Per-subject monitoring settings; config_version goes up with every change to anything the
# rules read, which makes the rule engine start its state afresh (docs/rules.md).
subject_monitoring = Table(
    "subject_monitoring",
    metadata,
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), primary_key=True),
    Column("tz", String(64), nullable=False),  # IANA zone for curfews and charging days
    Column("config_version", Integer, nullable=False),
    Column("updated_at", Double, nullable=False),
)

# Orders / licence conditions: licence, voluntary scheme, bail, domestic-abuse order.
orders = Table(
    "orders",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("starts_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger, nullable=True),
    Column("comms_loss_s", Integer, nullable=True),  # per-order no-data threshold
    Column("curfew_grace_s", Integer, nullable=True),
    Column("conditions", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Index(None, "subject_id"),
)

# Equipment assignment with history: a tag or home unit served a subject over
# [starts_at, ends_at). Rules attribute a device's data by the assignment at its event time.
assignments = Table(
    "assignments",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("device", BigInteger, ForeignKey("devices.id"), nullable=False),
    Column("role", String(16), nullable=False),  # tag, home_unit or victim
    Column("starts_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger, nullable=True),
    Column("created_at", Double, nullable=False),
    Index(None, "device", "starts_at"),
    Index(None, "subject_id"),
)

curfews = Table(
    "curfews",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("days", String(32), nullable=False),  # "mon,tue,..." (the day a window starts)
    Column("start", String(5), nullable=False),  # HH:MM local civil time
    Column("end", String(5), nullable=False),
    Column("tz", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Index(None, "subject_id"),
)

# One-off changes: excused (authorised absence) or extra curfew time.
curfew_exceptions = Table(
    "curfew_exceptions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("starts_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Index(None, "subject_id"),
)

# Zones: inclusion, exclusion or the subject's home; a circle (GeoJSON Point + radius), a
# polygon, or a corridor (LineString + width); buffer_m grows it (a victim's address zone);
# schedule: weekly windows when it applies (empty: always).
zones = Table(
    "zones",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("shape", String(16), nullable=False),
    Column("geometry", JSON, nullable=False),
    Column("radius_m", Double, nullable=False),
    Column("width_m", Double, nullable=False),
    Column("buffer_m", Double, nullable=False),
    Column("victim", Boolean, nullable=False),
    Column("schedule", JSON, nullable=False),
    Column("dwell_s", Integer, nullable=True),
    Column("created_at", Double, nullable=False),
    Index(None, "subject_id"),
)

charging_schedules = Table(
    "charging_schedules",
    metadata,
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), primary_key=True),
    Column("min_minutes", Integer, nullable=False),  # at least this much charging a day
    Column("created_at", Double, nullable=False),
)

# The officer-facing alert: one per episode, and episodes that recur soon after (or while
# the alert is still being worked) attach to it rather than raising another; a resolved
# alert whose condition recurs is reopened. state: open, acknowledged, resolved, cleared
# (late data showed the condition never happened).
alerts = Table(
    "alerts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("type", String(48), nullable=False),
    Column("group_key", String(128), nullable=False),  # subject:type:sub-key base
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("start", BigInteger, nullable=False),
    Column("end", BigInteger, nullable=True),
    Column("episodes", Integer, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("raised_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("acknowledged_by", BigInteger, ForeignKey("users.id"), nullable=True),
    Column("acknowledged_at", Double, nullable=True),
    Column("resolved_by", BigInteger, ForeignKey("users.id"), nullable=True),
    Column("resolved_at", Double, nullable=True),
    Column("outcome", String(32), nullable=True),
    Column("note", Text, nullable=True),
    Column("reopened", Integer, nullable=False),
    Index(None, "subject_id", "start"),
    Index(None, "group_key", "end"),
    Index(None, "state", "raised_at"),
    Index(None, "raised_at"),
)

# What the rules found: one row per episode, keyed deterministically (backend/rules/model.py)
# so re-evaluation finds the same row. cleared_at: late data showed it never happened.
alert_episodes = Table(
    "alert_episodes",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False),
    Column("alert_id", BigInteger, ForeignKey("alerts.id"), nullable=False),
    Column("subject_id", BigInteger, nullable=False),
    Column("rule", String(32), nullable=False),
    Column("type", String(48), nullable=False),
    Column("subkey", String(100), nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("start", BigInteger, nullable=False),
    Column("end", BigInteger, nullable=True),
    Column("confirmed_t", BigInteger, nullable=False),
    Column("closed_t", BigInteger, nullable=True),
    Column("evidence", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("raised_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("cleared_at", Double, nullable=True),
    UniqueConstraint("key"),
    Index(None, "subject_id", "closed_t"),
    Index(None, "alert_id"),
)

# The alert's history: raised, acknowledged, resolved, reopened, cleared, updated.
alert_actions = Table(
    "alert_actions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id"), nullable=False),
    Column("at", Double, nullable=False),
    Column("user_id", BigInteger, nullable=True),  # NULL: the rule engine
    Column("action", String(16), nullable=False),
    Column("note", Text, nullable=True),
    Index(None, "alert_id"),
)

# The rule engine's state per subject (backend/rules/engine.py State) and its snapshots at
# event-time boundaries, from which late data is re-evaluated.
rule_state = Table(
    "rule_state",
    metadata,
    Column("subject_id", BigInteger, primary_key=True, autoincrement=False),
    Column("covers", BigInteger, nullable=False),
    Column("config_version", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
)

rule_snapshots = Table(
    "rule_snapshots",
    metadata,
    Column("subject_id", BigInteger, primary_key=True, autoincrement=False),
    Column("at", BigInteger, primary_key=True, autoincrement=False),
    Column("state", Text, nullable=False),
)

# Batches ingest committed that the rules have not evaluated yet: written in the batch's own
# transaction, deleted in the transaction that evaluates it (backend/rules/sink.py, "The
# hand-over"). A row left behind (its worker died between the two, or the database went away
# during the evaluation) is evaluated by the next sweep of any worker.
rules_pending = Table(
    "rules_pending",
    metadata,
    # Chosen by the worker before the commit, so a retry after a lost commit answer names the
    # same row.
    Column("token", String(32), primary_key=True, autoincrement=False),
    Column("at", Double, nullable=False),  # the batch's backend time
    Column("frames", JSON, nullable=False),  # ids of the frames it stored
    Column("refusals", JSON, nullable=False),  # ids of the security events it wrote
    Index(None, "at"),
)

# Commands sent to devices; seq is the per-device command sequence (docs/protocol.md,
# COMMAND): strictly increasing, so the device refuses a replayed command.
device_commands = Table(
    "device_commands",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("key", SmallInteger, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("at", Double, nullable=False),
    UniqueConstraint("device", "seq"),
)

# A command its device must acknowledge, sent again until it is (backend/device_commands.py,
# `resend_due`; migration 0013_command_deliveries): one row per (device, key, value) of
# device_commands, however often it goes (a victim's warning: the notify key and the
# episode's start), each send being a device_commands row with that key and value. sends:
# how many went; next_at: when the next send, or the verdict, is due (NULL once settled);
# outcome: "acknowledged" or "unreached" (the on-call officer is told by alert alert_id,
# migration 0014_delivery_alerts), at settled_at; "answered_late" once the device answered
# after that (the alert says so).
command_deliveries = Table(
    "command_deliveries",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, nullable=False),
    Column("key", SmallInteger, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("sends", SmallInteger, nullable=False),
    Column("first_at", Double, nullable=False),
    Column("next_at", Double, nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("settled_at", Double, nullable=True),
    Column("alert_id", BigInteger, nullable=True),
    UniqueConstraint("device", "key", "value"),
    Index(None, "next_at"),
)

# A victim's device linked to an order over [starts_at, ends_at) of event time: the
# proximity rule's distances (warn_m > alert_m), how long the device may be silent (NULL:
# the rule's default), and victim-safe mode (on: no one is shown the victim's positions; off:
# the owning unit's managing roles may be). The device's assignment (role victim) to the
# order's subject is what attributes its frames (docs/rules.md, "Proximity").
victim_devices = Table(
    "victim_devices",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, ForeignKey("devices.id"), nullable=False),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=False),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),  # the order's
    Column("warn_m", Integer, nullable=False),
    Column("alert_m", Integer, nullable=False),
    Column("silent_s", Integer, nullable=True),
    Column("victim_safe", Boolean, nullable=False),
    Column("starts_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger, nullable=True),
    Column("created_at", Double, nullable=False),
    Index(None, "device"),
    Index(None, "order_id"),
    Index(None, "subject_id"),
)

# ---------------------------------------------------------------------------------------
# Notifications (migration 0009_notifications, backend/notify): who is on call for a unit,
# which alerts page them, the browsers they receive Web Push in, each page sent and the
# durable outbox the dispatcher works from. Times are backend (float Unix seconds).

# An on-call shift: `user_id` is on call for `unit_id` over [starts_at, ends_at), rank 1
# paged first, rank 2 when rank 1 does not acknowledge in time, and so on.
oncall_shifts = Table(
    "oncall_shifts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("unit_id", BigInteger, ForeignKey("units.id"), nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("rank", SmallInteger, nullable=False),
    Column("starts_at", Double, nullable=False),
    Column("ends_at", Double, nullable=False),
    Column("channels", String(32), nullable=False),  # comma-separated: email, push
    Column("email", String(254), nullable=True),
    Column("created_at", Double, nullable=False),
    Index(None, "unit_id", "ends_at"),
)

# Which alerts page the unit's on-call officer: per alert type ("*": any other type), from
# a severity up; escalation after escalate_after_s unacknowledged; quiet hours (local
# HH:MM in tz) defer a page to their end; an alert of the same condition paged within
# dedup_s is not paged again. webhook_url: also POSTed, signed with a key derived from the
# server key and the policy id (backend/notify/channels.py).
notification_policies = Table(
    "notification_policies",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("unit_id", BigInteger, ForeignKey("units.id"), nullable=False),
    Column("alert_type", String(48), nullable=False),
    Column("min_severity", String(16), nullable=False),
    Column("escalate_after_s", Integer, nullable=False),
    Column("dedup_s", Integer, nullable=False),
    Column("quiet_start", String(5), nullable=True),
    Column("quiet_end", String(5), nullable=True),
    Column("tz", String(64), nullable=False),
    Column("webhook_url", String(500), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("unit_id", "alert_type"),
)

# A browser's Web Push subscription (PushSubscription.toJSON()) for a user.
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("endpoint", String(1000), nullable=False),
    Column("p256dh", String(128), nullable=False),
    Column("auth", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("endpoint"),
    Index(None, "user_id"),
)

# One page: an alert sent to one on-call officer at one escalation level. The link in it
# carries a signed token naming the page; used_at makes it single-use. state: paged,
# acknowledged (through this page's link or the queue), escalated, exhausted (no one left).
notification_pages = Table(
    "notification_pages",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id"), nullable=False),
    Column("policy_id", BigInteger, ForeignKey("notification_policies.id"), nullable=False),
    Column("group_key", String(128), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=True),
    Column("state", String(16), nullable=False),
    Column("paged_at", Double, nullable=False),
    Column("token_expires_at", Double, nullable=False),
    Column("token_used_at", Double, nullable=True),
    Index(None, "alert_id"),
    Index(None, "group_key", "paged_at"),
)

# The dispatcher's durable work list: plan (an alert was raised), escalate (a page's time
# ran out), email, push, webhook. A row is claimed with a lease (lease_until) so that two
# dispatchers never send it twice at once; a failed attempt is retried at due_at with
# back-off until attempts reaches the bound, then state = failed.
notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("alert_id", BigInteger, ForeignKey("alerts.id"), nullable=False),
    Column("page_id", BigInteger, ForeignKey("notification_pages.id"), nullable=True),
    Column("target", String(1000), nullable=True),
    Column("state", String(16), nullable=False),  # pending, sent, failed, dropped
    Column("due_at", Double, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_until", Double, nullable=True),
    Column("last_error", String(200), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("done_at", Double, nullable=True),
    Index(None, "state", "due_at"),
    Index(None, "page_id"),
)

# Re-evaluation reads a subject's stored frames by device and event time; and home-unit
# frames by arrival too, because a LINK-offline last will is dated when it arrived (it was
# signed at connect time). Partial: only home-unit frames (few) pay for the second index.
Index("ix_frames_device_ts", frames.c.device, frames.c.ts)
Index(
    "ix_frames_home_received",
    frames.c.device,
    frames.c.received_at,
    sqlite_where=frames.c.mtype == 2,
    postgresql_where=frames.c.mtype == 2,
)

# ---------------------------------------------------------------------------------------
# The voluntary scheme (migration 0006_consent_pool): a subject's enrolment with its consent,
# the removal task a withdrawal opens, and the unit's tag pool. backend/services/consent.py and
# pool.py own them.

# One enrolment per period on a scheme. Consent: when it was given (consent_at, Unix s),
# which kinds of unit the wearer agreed their data may be shared with (sharing:
# comma-separated subset of roles.UNIT_KINDS), who witnessed it and the signed document's
# reference; review_at: when it must be reviewed with the wearer. withdrawn_at: when the
# wearer withdrew (Unix s); exited_at: when the equipment came off after it (the end of the
# enrolment; from then on ingest refuses the subject's devices' new data).
enrolments = Table(
    "enrolments",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("scheme", String(100), nullable=False),
    Column("consent_at", BigInteger, nullable=False),
    Column("sharing", String(64), nullable=False),
    Column("witnessed_by", String(100), nullable=False),
    Column("document_ref", String(100), nullable=False),
    Column("review_at", BigInteger, nullable=False),
    Column("withdrawn_at", BigInteger, nullable=True),
    Column("withdrawal_note", Text, nullable=True),
    Column("exited_at", BigInteger, nullable=True),
    Column("created_by", BigInteger, ForeignKey("users.id"), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index(None, "subject_id"),
)

# Taking the equipment off a wearer who withdrew: opened by the withdrawal, done when the
# officer records the removal (removed_at, Unix s: when the equipment came off). Completing
# it ends the subject's assignments at removed_at.
removal_tasks = Table(
    "removal_tasks",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("enrolment_id", BigInteger, ForeignKey("enrolments.id"), nullable=False),
    Column("opened_at", Double, nullable=False),
    Column("opened_by", BigInteger, ForeignKey("users.id"), nullable=True),
    Column("done_at", Double, nullable=True),
    Column("done_by", BigInteger, ForeignKey("users.id"), nullable=True),
    Column("removed_at", BigInteger, nullable=True),
    Index(None, "subject_id"),
    Index(None, "done_at"),
)

# The tag pool: every change of a tag's state (backend/services/pool.py STATES) with the unit
# whose pool holds it, who made it and, for fitting and removal, the assignment. The newest
# row is the tag's state now.
tag_states = Table(
    "tag_states",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, ForeignKey("devices.id"), nullable=False),
    Column("unit_id", BigInteger, ForeignKey("units.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("at", Double, nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=True),
    Column("assignment_id", BigInteger, ForeignKey("assignments.id"), nullable=True),
    Column("note", Text, nullable=False),
    Index(None, "device", "id"),
    Index(None, "unit_id"),
)

# Commands an operator asked for (migration 0007_command_queue; backend/services/
# broker_push.py): queued by the API or the shell, which hold no broker connection, and
# numbered, signed and published by an ingest worker's rules timer (backend/device_commands.py),
# so the command sequence is taken at the moment of sending, in order with the rules' own
# commands. kind: what to send ("brokers": a cmd_broker list); body: its arguments (JSON);
# seq and sent_at: the device_commands sequence it went out under, and when (NULL: queued).
command_queue = Table(
    "command_queue",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("device", BigInteger, ForeignKey("devices.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("body", JSON, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("queued_at", Double, nullable=False),
    Column("seq", BigInteger, nullable=True),
    Column("sent_at", Double, nullable=True),
    Index(None, "device", "id"),
    Index(None, "sent_at"),
)

# What became of a subject's episode of monitoring (migration 0010_outcomes;
# backend/services/outcomes.py), entered by the officers of the owning unit for evaluation
# (docs/operations.md, "Evaluation"): the kind, the civil date it happened (YYYY-MM-DD), a
# note, the order it ends if known, and who recorded it when.
outcomes = Table(
    "outcomes",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subject_id", BigInteger, ForeignKey("subjects.id"), nullable=False),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("occurred_on", String(10), nullable=False),
    Column("note", Text, nullable=False),
    Column("recorded_by", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("recorded_at", Double, nullable=False),
    # Corrections and withdrawal (migration 0011_outcome_corrections): the last correction;
    # a withdrawn outcome is kept but no longer counts.
    Column("corrected_at", Double, nullable=True),
    Column(
        "corrected_by",
        BigInteger,
        ForeignKey("users.id", name="fk_outcomes_corrected_by_users"),
        nullable=True,
    ),
    Column("withdrawn_at", Double, nullable=True),
    Column(
        "withdrawn_by",
        BigInteger,
        ForeignKey("users.id", name="fk_outcomes_withdrawn_by_users"),
        nullable=True,
    ),
    Column("withdrawal_reason", String(500), nullable=True),
    Index(None, "subject_id"),
)
