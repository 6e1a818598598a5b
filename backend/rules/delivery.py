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

Victim-safe: it names the device, the message and the command sequences, never a place."""

from __future__ import annotations

from sqlalchemy import Connection

from backend.device_commands import Unreached, notify_message
from backend.rules.evaluator import Changes
from backend.rules.model import DELIVERY, Episode
from backend.rules.store import SqlRepository

UNREACHED = "victim_not_reached"
VERSION = 1


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


def raise_unreached(conn: Connection, subject: int, u: Unreached, now: float) -> None:
    """Raise the alert for `u` on `subject` in the caller's transaction (under the subject's
    lock, as an evaluation writes its alerts)."""
    repo = SqlRepository(conn, now)
    repo.lock(subject)
    repo.apply_episodes(Changes(raised=[unreached_episode(subject, u)]))
