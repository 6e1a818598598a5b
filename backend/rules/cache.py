"""A worker's in-memory cache of each subject's rule configuration, state and stored
episodes, and the repository that uses it inside one evaluation transaction.

Evaluating a subject needs its configuration (a handful of tables), its rule state (a JSON
document) and its stored episodes in scope (for reconciliation). Read and parsed afresh for
every batch, that was most of the cost of a live frame. Kept in memory instead, they are
validated on every use by one query for all subjects of a batch, so the database stays the
authority when several workers share a subscription:

- configuration by `subject_monitoring.config_version` (every API change bumps it);
- state and episodes by the state's revision (`State.rev`, the first field of the stored
  JSON, read back as a short prefix): every write of a subject's state or episodes — by any
  worker, live data, late data or the clock — bumps it under the subject's lock. A revision
  other than the one cached means someone else evaluated the subject: the entry is
  reloaded from the database.

Writes are collected per transaction and flushed with one executemany per table; episode
changes (rare) go straight through SqlRepository. If anything fails, the sink drops the
entries of the whole batch (they may hold what was rolled back) and re-evaluates each
subject alone from the database."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Integer,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)

from backend.rules.config import SubjectConfig
from backend.rules.engine import REV_PREFIX, State, revision_of
from backend.rules.evaluator import SNAPSHOT_KEEP_S, Changes
from backend.rules.model import Episode
from backend.rules.store import SqlRepository, stored_form
from backend.storage.schema import (
    assignments,
    rule_snapshots,
    rule_state,
    subject_monitoring,
)

NO_ROW = None  # revision of a subject without stored state
UNKNOWN = -1  # a stored state without a readable revision (never trusted)
DUE_NOW = 0  # deadline of an entry the clock has not evaluated yet


@dataclass
class Entry:
    version: int = -1  # config_version `config` was loaded at
    config: SubjectConfig | None = None
    rev: int | None = NO_ROW  # revision of `state` (NO_ROW: none stored)
    state: State | None = None
    loaded: bool = False  # `rev`/`state` reflect the database as of the last validation
    # Stored, not cleared episodes with end None or closed_t >= low (None: not loaded).
    episodes: dict[str, Episode] | None = None
    low: int = 0
    deadline: int = DUE_NOW  # the clock need not look before horizon + 1 reaches this


@dataclass
class Revisions:
    """What the database says now: config version and state revision per subject."""

    versions: dict[int, int] = field(default_factory=dict)
    revs: dict[int, int | None] = field(default_factory=dict)


class SubjectCache:
    """Entries for up to `max_subjects` subjects, least recently used dropped first."""

    def __init__(self, max_subjects: int = 20_000) -> None:
        self.max_subjects = max_subjects
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self.hits = 0
        self.reloads = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, subject: int) -> Entry:
        e = self._entries.get(subject)
        if e is None:
            e = self._entries[subject] = Entry()
            while len(self._entries) > self.max_subjects:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(subject)
        return e

    def peek(self, subject: int) -> Entry | None:
        return self._entries.get(subject)

    def drop(self, subjects: Iterable[int]) -> None:
        for s in subjects:
            self._entries.pop(s, None)

    def current(self, subject: int, version: int, rev: int | None) -> bool:
        """Whether the entry's state (and episodes) are those the database holds."""
        e = self._entries.get(subject)
        if e is None or not e.loaded or e.version != version:
            return False
        if rev is NO_ROW:
            return e.rev is NO_ROW
        return e.rev is not None and e.rev >= 0 and e.rev == rev

    def behind(self, subject: int) -> bool:
        """Whether the cached state is a run still catching up (evaluator.py)."""
        e = self._entries.get(subject)
        return e is not None and e.state is not None and e.state.behind

    def quiet(self, subject: int, version: int, rev: int | None, horizon: int) -> bool:
        """Nothing for the clock to do at `horizon`: the entry is current and its deadline
        is still ahead."""
        e = self._entries.get(subject)
        return (
            e is not None
            and self.current(subject, version, rev)
            and e.config is not None
            and horizon + 1 < e.deadline
        )


# Built once: constructing a statement costs about as much as running a small one.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_HEAD = func.substr(rule_state.c.state, 1, REV_PREFIX)
_ALL_SUBJECTS = select(assignments.c.subject_id).distinct()
_ALL_VERSIONS = select(subject_monitoring.c.subject_id, subject_monitoring.c.config_version)
_ALL_HEADS = select(rule_state.c.subject_id, _HEAD)
# One round trip for a batch: versions (kind 0) and revision prefixes (kind 1).
_REVISIONS = union_all(
    select(
        literal(0).label("kind"),
        subject_monitoring.c.subject_id.label("sid"),
        subject_monitoring.c.config_version.label("version"),
        cast(null(), Text).label("head"),
    ).where(subject_monitoring.c.subject_id.in_(_IDS)),
    select(literal(1), rule_state.c.subject_id, cast(null(), Integer), _HEAD).where(
        rule_state.c.subject_id.in_(_IDS)
    ),
)
_STATES = select(rule_state).where(rule_state.c.subject_id.in_(_IDS))
_UPDATE = (
    update(rule_state)
    .where(rule_state.c.subject_id == bindparam("b_subject"))
    .values(
        covers=bindparam("b_covers"),
        config_version=bindparam("b_version"),
        state=bindparam("b_state"),
        updated_at=bindparam("b_at"),
    )
)
_INSERT = insert(rule_state).values(
    subject_id=bindparam("b_subject"),
    covers=bindparam("b_covers"),
    config_version=bindparam("b_version"),
    state=bindparam("b_state"),
    updated_at=bindparam("b_at"),
)


def revisions(conn: Connection, subjects: Sequence[int] | None = None) -> Revisions:
    """Config versions and state revisions of `subjects` (None: every subject with
    equipment assigned, for the clock), in two short queries."""
    out = Revisions()
    versions: Iterable[tuple[int, int]]
    heads: Iterable[tuple[int, str]]
    if subjects is None:
        ids = list(conn.execute(_ALL_SUBJECTS).scalars())
        versions = [(r[0], r[1]) for r in conn.execute(_ALL_VERSIONS)]
        heads = [(r[0], r[1]) for r in conn.execute(_ALL_HEADS)]
    else:
        ids = sorted(set(subjects))
        rows = conn.execute(_REVISIONS, {"ids": ids}).all()
        versions = [(r.sid, r.version) for r in rows if r.kind == 0]
        heads = [(r.sid, r.head) for r in rows if r.kind == 1]
    for sid in ids:
        out.versions[sid], out.revs[sid] = 0, NO_ROW
    for sid, version in versions:
        if sid in out.versions:
            out.versions[sid] = version
    for sid, head in heads:
        if sid in out.revs:
            rev = revision_of(head)
            out.revs[sid] = UNKNOWN if rev is None else rev
    return out


class CachedRepository(SqlRepository):
    """The Evaluator's repository for one transaction over a SubjectCache. Call `validate`
    for the batch's subjects first (after taking their locks) and `flush` before commit."""

    def __init__(self, conn: Connection, now: float, cache: SubjectCache) -> None:
        super().__init__(conn, now)
        self.cache = cache
        self.db = Revisions()
        # subject -> (state to write, snapshots, whether a row exists)
        self.pending: dict[int, tuple[State, Sequence[tuple[int, str]], bool]] = {}

    def lock_all(self, subjects: Sequence[int]) -> None:
        """The subjects' evaluation locks, in id order (SQLite: BEGIN IMMEDIATE already
        serializes writers)."""
        if self.conn.dialect.name == "postgresql" and subjects:
            keys = [6_000_000 + s for s in sorted(set(subjects))]
            self.conn.execute(
                text(
                    "SELECT pg_advisory_xact_lock(k) FROM "
                    "(SELECT unnest(CAST(:ks AS BIGINT[])) AS k ORDER BY 1) AS ordered"
                ),
                {"ks": keys},
            )

    def validate(self, subjects: Sequence[int]) -> Revisions:
        """Check every entry against the database (one query); reload stale states in one
        more. Returns the config versions the caller must load configurations at."""
        self.db = revisions(self.conn, subjects)
        stale = []
        for s in subjects:
            e = self.cache.get(s)
            if self.cache.current(s, self.db.versions[s], self.db.revs[s]):
                self.cache.hits += 1
                continue
            stale.append(s)
            e.rev, e.state, e.episodes, e.loaded, e.deadline = NO_ROW, None, None, True, DUE_NOW
        if stale:
            self.cache.reloads += len(stale)
            for row in self.conn.execute(_STATES, {"ids": stale}):
                st = State.from_json(row.state)
                st.covers, st.config_version = row.covers, row.config_version
                e = self.cache.get(row.subject_id)
                e.state, e.rev = st, self.db.revs[row.subject_id]
        for s in subjects:  # entries are current for this version from here on
            self.cache.get(s).version = self.db.versions[s]
        return self.db

    # ---- Repository ------------------------------------------------------------------

    def state(self, subject: int) -> State | None:
        return self.cache.get(subject).state

    def save_state(self, subject: int, state: State, snapshots: Sequence[tuple[int, str]]) -> None:
        e = self.cache.get(subject)
        exists = e.rev is not NO_ROW or (subject in self.pending and self.pending[subject][2])
        state.rev = max(e.rev or 0, 0) + 1
        self.pending[subject] = (state, snapshots, exists)
        e.state, e.rev = state, state.rev

    def episodes_in_scope(self, subject: int, since: int) -> list[Episode]:
        e = self.cache.get(subject)
        if e.episodes is None or since < e.low:
            e.episodes = {ep.key: ep for ep in super().episodes_in_scope(subject, since)}
            e.low = since
        elif since > e.low:
            # The scope only moves on with live data: forget what has left it (an earlier
            # `since`, from late data, reloads from the database).
            gone = [
                k
                for k, ep in e.episodes.items()
                if ep.end is not None and (ep.closed_t is None or ep.closed_t < since)
            ]
            for k in gone:
                del e.episodes[k]
            e.low = since
        return [
            ep
            for ep in e.episodes.values()
            if ep.end is None or (ep.closed_t is not None and ep.closed_t >= since)
        ]

    def apply(self, subject: int, changes: Changes) -> None:
        self.apply_episodes(changes)
        if not changes:
            return
        e = self.cache.get(subject)
        if subject not in self.pending and e.state is not None:
            # Episodes changed without a new state (a clock tick): the revision still moves,
            # so other workers' caches of these episodes are seen to be stale.
            self.save_state(subject, e.state, [])
        if e.episodes is not None:
            for ep in changes.raised + changes.updated:
                e.episodes[ep.key] = stored_form(ep)
            for ep in changes.cleared:
                e.episodes.pop(ep.key, None)

    # ---- writes ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending states: one executemany for updates, one for new rows."""
        if not self.pending:
            return
        rows: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for subject, (state, snapshots, exists) in sorted(self.pending.items()):
            rows[exists].append(
                {
                    "b_subject": subject,
                    "b_covers": state.covers,
                    "b_version": state.config_version,
                    "b_state": state.to_json(),
                    "b_at": self.now,
                }
            )
            if snapshots:
                self._snapshots(subject, state, snapshots)
        for stmt, params in ((_UPDATE, rows[True]), (_INSERT, rows[False])):
            if params:  # a single row as one statement (executemany costs more round trips)
                self.conn.execute(stmt, params if len(params) > 1 else params[0])
        self.pending.clear()

    def _snapshots(self, subject: int, state: State, snapshots: Sequence[tuple[int, str]]) -> None:
        s = rule_snapshots.c
        self.conn.execute(
            delete(rule_snapshots).where(
                s.subject_id == subject,
                or_(s.at.in_([a for a, _ in snapshots]), s.at < state.covers - SNAPSHOT_KEEP_S),
            )
        )
        self.conn.execute(
            insert(rule_snapshots),
            [{"subject_id": subject, "at": a, "state": t} for a, t in snapshots],
        )
