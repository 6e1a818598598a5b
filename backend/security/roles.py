"""Roles and scopes: what a role may do with a subject of its own unit, and with a subject
another unit has shared with its unit.

Separation of duties: an administrator manages units and accounts but sees no subject
data; an auditor reads the audit log and nothing else; partners only read. A researcher
reads its unit's cohort figures under pseudonymous ids (backend/services/research.py) and
no subject at all: no name, reference, position, trail, zone or subject detail."""

from __future__ import annotations

ADMINISTRATOR = "administrator"
SUPERVISOR = "supervisor"
OFFICER = "officer"
PARTNER = "partner"
AUDITOR = "auditor"
RESEARCHER = "researcher"
ROLES = (ADMINISTRATOR, SUPERVISOR, OFFICER, PARTNER, AUDITOR, RESEARCHER)

# Subject scopes, each naming what of a subject it lets a caller read. VIEW: that the
# subject exists, its reference and name, nothing else. LIVE: current position and presence.
# TRAIL: position history (a purpose is required). ALERTS: its alerts and the device events
# beside them. REPORTS: compliance reports. CONDITIONS: what it is monitored against: orders
# and their conditions, curfews, exceptions with their reasons, zones (the home and a
# victim's address among them), equipment and charging schedule. MANAGE: every change to the
# subject's records: its monitoring (orders, curfews, zones...) and the work on its alerts
# (acknowledge, resolve). VICTIM: a linked victim's device: its link, the warnings sent to it
# and (only with victim-safe mode off) the victim's own positions; never shared, never a
# partner's (docs/rules.md, "Proximity: the victim's device"). Every scope but MANAGE only
# reads.
VIEW = "view"
LIVE = "live"
TRAIL = "trail"
ALERTS = "alerts"
REPORTS = "reports"
CONDITIONS = "conditions"
MANAGE = "manage"
VICTIM = "victim"
SCOPES = (VIEW, LIVE, TRAIL, ALERTS, REPORTS, CONDITIONS, MANAGE, VICTIM)
# What a share can grant to read (VIEW comes with any of them; MANAGE never crosses units, so
# a share is read-only; nor does VICTIM).
SHARED_READS = (LIVE, TRAIL, ALERTS, REPORTS, CONDITIONS)
# A share may also grant RESEARCH: the receiving unit's cohort counts the subject, under its
# pseudonym, as its own (backend/services/research.py). It reads nothing of the subject:
# no role holds it as a scope, and a share of RESEARCH alone shows the subject to nobody in
# the receiving unit, not even its name.
RESEARCH = "research"
SHAREABLE = (*SHARED_READS, RESEARCH)
# Scopes whose every use is a consultation of personal data (locations, addresses, the
# conditions of an order), audited as such.
CONSULTATION = (LIVE, TRAIL, ALERTS, REPORTS, CONDITIONS, VICTIM)
# Scopes that need a stated purpose on every request.
PURPOSE_REQUIRED = (TRAIL, VICTIM)

UNIT_KINDS = ("police", "partner")

_OWN: dict[str, frozenset[str]] = {
    SUPERVISOR: frozenset(SCOPES),
    OFFICER: frozenset(SCOPES),
    PARTNER: frozenset((VIEW, LIVE, TRAIL, ALERTS, REPORTS, CONDITIONS)),
}
# Roles that may use what a share grants to their unit.
_SHARED_ROLES = frozenset((SUPERVISOR, OFFICER, PARTNER))


def own_scopes(role: str) -> frozenset[str]:
    """Scopes a role has over subjects its unit owns."""
    return _OWN.get(role, frozenset())


def shared_scopes(role: str, granted: frozenset[str]) -> frozenset[str]:
    """Scopes a role has over a subject shared with its unit with `granted`."""
    reads = granted & frozenset(SHARED_READS)
    if role not in _SHARED_ROLES or not reads:
        return frozenset()
    return frozenset({VIEW} | reads)


def parse_scopes(text: str) -> frozenset[str]:
    return frozenset(s for s in text.split(",") if s)


def format_scopes(scopes: frozenset[str] | set[str] | list[str]) -> str:
    return ",".join(sorted(set(scopes)))


def may_share(role: str) -> bool:
    return role == SUPERVISOR


def may_keep_pool(role: str) -> bool:
    """The unit's tag pool (backend/services/pool.py): the officers who fit and remove tags."""
    return role in (SUPERVISOR, OFFICER)


def may_read_directory(role: str) -> bool:
    """Units and users lists: administrators manage them, auditors need names for the log."""
    return role in (ADMINISTRATOR, AUDITOR)
