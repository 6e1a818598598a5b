"""What the rule engine reads and writes: observations in, episodes out.

Everything here is plain data. An observation is one record a device reported (or one
rejection ingest recorded), placed on the device's event-time line; its `ref` names it by
what the device sent — (device, boot, seq, record index) — never by arrival, so the same data
delivered twice or in another order gives the same observations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware import frame as fr

# Roles a device plays for a subject (equipment assignment).
TAG = "tag"
HOME_UNIT = "home_unit"
VICTIM = "victim"  # a victim's own device, linked to the subject's order (proximity.py)

# The rule name of episodes the backend raises about its own downlinks, not found by folding
# a subject's data (backend/rules/delivery.py): re-evaluation neither finds nor clears them.
DELIVERY = "delivery"

# Observation names beyond the record names of docs/protocol.md.
SECURITY = "security"  # a rejected frame (bad MAC, replay, ...) attributed to a device

# Alert severities, most urgent first (notification policies page from a severity up).
SEVERITIES = ("critical", "high", "medium", "low")


@dataclass(frozen=True, slots=True)
class Obs:
    """One thing a device said, at event time `t` (Unix seconds)."""

    t: int
    device: int
    role: str  # TAG or HOME_UNIT: the device's role for the subject
    name: str  # record name ("fix", "tamper", "presence", "link", ...) or SECURITY
    ref: str  # "device/boot/seq/idx": stable identity, used for ordering ties and evidence
    values: Mapping[str, int] = field(default_factory=dict)
    detail: str = ""
    late: bool = False

    def sort_key(self) -> tuple[int, str]:
        return (self.t, self.ref)

    def v(self, name: str, default: int = 0) -> int:
        return int(self.values.get(name, default))

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "device": self.device, "name": self.name}
        out["ref"] = self.ref
        out.update({k: v for k, v in self.values.items() if k != "dt"})
        if self.detail:
            out["detail"] = self.detail
        return out


def ordered(observations: Iterable[Obs]) -> list[Obs]:
    """Event-time order with duplicates removed (same ref = same record delivered twice)."""
    seen: dict[str, Obs] = {}
    for o in observations:
        seen.setdefault(o.ref, o)
    return sorted(seen.values(), key=Obs.sort_key)


MAX_EVIDENCE = 12  # evidence items kept per episode: the first half and the latest half


@dataclass
class Episode:
    """A continuous condition a rule found: one alert per episode (docs/rules.md).

    `key` is deterministic — subject, rule, type, sub-key (zone id, curfew night, sensor) and
    start time — so re-evaluating the same data finds the same episode again. `end` is None
    while the condition lasts. `confirmed_t` is the event time at which the condition became
    alert-worthy (grace or dwell passed); `closed_t` is the event time at which the engine
    closed it (the reconciliation boundary, see engine.py)."""

    subject: int
    rule: str
    type: str
    subkey: str
    start: int
    version: int
    confirmed_t: int
    end: int | None = None
    closed_t: int | None = None
    severity: str = "high"
    evidence: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    late: bool = False

    @property
    def key(self) -> str:
        return f"{self.subject}:{self.rule}:{self.type}:{self.subkey}:{self.start}"

    def add_evidence(self, item: Mapping[str, Any]) -> None:
        add_evidence(self.evidence, item)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "rule": self.rule,
            "type": self.type,
            "subkey": self.subkey,
            "start": self.start,
            "version": self.version,
            "confirmed_t": self.confirmed_t,
            "end": self.end,
            "closed_t": self.closed_t,
            "severity": self.severity,
            "evidence": list(self.evidence),
            "details": dict(self.details),
            "late": self.late,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Episode:
        return cls(**dict(d))


def add_evidence(items: list[dict[str, Any]], item: Mapping[str, Any]) -> None:
    """Keep the first MAX_EVIDENCE/2 items (what started it) and the latest ones."""
    if any(i.get("ref") == item.get("ref") for i in items if "ref" in item):
        return
    items.append(dict(item))
    half = MAX_EVIDENCE // 2
    if len(items) > MAX_EVIDENCE:
        del items[half]


@dataclass(frozen=True)
class Command:
    """A downlink the engine asks for (the sink signs and publishes it, live data only)."""

    device: int
    key: int  # cmd_config: a firmware.frame CFG_* key; cmd_notify: the message id
    value: int  # cmd_config: the value; cmd_notify: what it is about (an episode's start)
    reason: str
    ref: str = ""  # the observation that asked for it
    min_gap: int = 0  # 0: always sent; else not sent when it repeats the last one (`repeats`)
    cmd: int = fr.CMD_CONFIG  # the command record: CMD_CONFIG or CMD_NOTIFY

    @property
    def moment(self) -> bool:
        """Whether the value is a moment that a later one supersedes (a fast-sampling
        deadline, a warning's episode start) rather than a setting the device keeps until
        told another (a batch period)."""
        return self.cmd == fr.CMD_NOTIFY or self.key == fr.CFG_FAST_UNTIL

    def repeats(self, prev: int | None) -> bool:
        """Whether the device's last command under this key, of value `prev`, already asked
        for this one (the sink then does not send it: a rule folding its unsettled tail
        afresh asks again for what it asked before). A moment: if no more than `min_gap`
        earlier, or later. A setting: only the same value, so a batch of one fix after the
        firmware's ten, and ten back, both go."""
        if not self.min_gap or prev is None:
            return False
        if self.moment:
            return prev >= self.value - self.min_gap
        return prev == self.value


def to_send(commands: Sequence[Command]) -> list[Command]:
    """What of one evaluation's commands goes to the devices (before `Command.repeats`): a
    setting the sink de-duplicates only at its last value per device and key, everything
    else as asked. A tail folded afresh asks again for what it asked before, a batch of one
    fix and the firmware's ten back among it, and only the last is the tag's to keep."""
    last = {_slot(c): i for i, c in enumerate(commands) if _kept(c)}
    return [c for i, c in enumerate(commands) if not _kept(c) or last[_slot(c)] == i]


def sent(commands: Sequence[Command], last: dict[tuple[int, int, int], int]) -> list[Command]:
    """The commands of one evaluation the sink sends (`to_send`, less those that repeat the
    last value sent under their device and key: `Command.repeats`), with `last` updated.
    The sink keeps `last` in device_commands; the simulator and the tests in memory."""
    out = []
    for c in to_send(commands):
        if c.repeats(last.get(_slot(c))):
            continue
        last[_slot(c)] = c.value
        out.append(c)
    return out


def _slot(c: Command) -> tuple[int, int, int]:
    return c.device, c.cmd, c.key


def _kept(c: Command) -> bool:
    """A setting the device keeps until told another, which the sink de-duplicates."""
    return bool(c.min_gap) and not c.moment
