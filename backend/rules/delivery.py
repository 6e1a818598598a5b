"""Alerts about the backend's own downlinks rather than a subject's data: a command its device
never acknowledged (backend/device_commands.py, `resend_due`). Today that is a victim's
warning (`victim_not_reached`, high): the warning went `sends` times and the victim's device
never said it showed one, so the victim may not know the subject is near, and the on-call
officer must reach them another way.

The episode is raised at backend time by the rules timer, in the transaction that gives the
command up, through the alert workflow the rules' episodes take (store.SqlRepository: the
alert, its history, the notification outbox), so the officer sees it in the alert queue and is
paged like any type a unit's policy covers. It is dated from the first send to the verdict.
No rule folds it, so re-evaluating the subject's data neither finds nor clears it
(store.episodes_in_scope leaves rule DELIVERY out). Its sub-key names the device before the
'@': warnings a device missed within an hour of each other are one alert (store.group_key).

If the device answers one of the sends as run after that (`note_answer`), the alert says so
in its history (action `answered`, in the subject's local time): the victim has seen the
warning after all. The alert is not resolved for the officer, who was told to act and may
be acting (phoning the victim): they decide, with that in front of them. It is not paged
either: the page asked them to look at the alert, and the alert shows it.

Victim-safe: it names the device, the message and the command sequences, never a place."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from backend.device_commands import LateAnswer, Resend, Unreached, notify_message
from backend.rules.evaluator import Changes
from backend.rules.model import DELIVERY, Episode
from backend.rules.proximity import NOTIFY_ALERT, NOTIFY_WARNING
from backend.rules.schedule import DEFAULT_TZ
from backend.rules.store import SqlRepository
from backend.storage.schema import alert_episodes, alerts, subject_monitoring

UNREACHED = "victim_not_reached"
VERSION = 1
ANSWERED = "answered"  # alert_actions.action of a late answer
WHAT = {NOTIFY_WARNING: "warning-distance", NOTIFY_ALERT: "alert-distance"}


def describe(warnings: Resend) -> dict[str, Any]:
    """Its entry beside the rules' (GET /api/rules): no rule raises its alert, but an officer
    reading the rules should find it, with the warnings' resend policy in force (settings)."""
    return {"rule": DELIVERY, "version": VERSION, "params": asdict(warnings)}


def unreached_episode(subject: int, u: Unreached) -> Episode:
    end = int(u.at)
    ep = Episode(
        subject=subject,
        rule=DELIVERY,
        type=UNREACHED,
        subkey=f"{u.device}@{u.key}/{u.value}",
        start=int(u.sent_at[0]) if u.sent_at else end,
        version=VERSION,
        confirmed_t=end,
        end=end,
        closed_t=end,
        severity="high",
        details={
            "victim_device": u.device,
            "message": notify_message(u.key),
            "sends": len(u.seqs),
        },
    )
    for seq, at in zip(u.seqs, u.sent_at, strict=True):
        ep.add_evidence({"t": int(at), "name": "cmd_notify", "ref": f"cmd/{u.device}/{seq}"})
    return ep


def raise_unreached(conn: Connection, subject: int, u: Unreached, now: float) -> int | None:
    """Raise the alert for `u` on `subject` in the caller's transaction (under the subject's
    lock, as an evaluation writes its alerts); the alert it joined or raised."""
    repo = SqlRepository(conn, now)
    repo.lock(subject)
    ep = unreached_episode(subject, u)
    repo.apply_episodes(Changes(raised=[ep]))
    e = alert_episodes.c
    alert = conn.execute(select(e.alert_id).where(e.key == ep.key[:200])).scalar()
    return None if alert is None else int(alert)


def note_answer(conn: Connection, a: LateAnswer, at: float, now: float) -> None:
    """Note on the alert that told the officer that the victim's device answered send
    `a.seq` as run, received at backend time `at`, in the caller's transaction (under the
    subject's lock)."""
    if a.alert_id is None:
        return  # no one was told (the device's link had gone): nothing to correct
    subject = conn.execute(select(alerts.c.subject_id).where(alerts.c.id == a.alert_id)).scalar()
    if subject is None:
        return
    tz = conn.execute(
        select(subject_monitoring.c.tz).where(subject_monitoring.c.subject_id == subject)
    ).scalar()
    zone = ZoneInfo(tz or DEFAULT_TZ)

    def local(t: float) -> str:
        return f"{datetime.fromtimestamp(t, UTC).astimezone(zone):%H:%M:%S %Z}"

    what = WHAT.get(notify_message(a.key), f"message {notify_message(a.key)}")
    repo = SqlRepository(conn, now)
    repo.lock(subject)
    repo.annotate(
        a.alert_id,
        ANSWERED,
        f"the victim's device confirmed the {what} warning at {local(at)} (command "
        f"{a.seq}, sent {local(a.sent_at)}): the victim has now seen it. The alert stays as "
        "it is until an officer resolves it.",
    )
