"""The victim's own device as a moving exclusion zone (version 1): a warning and an alert when
the subject's tag comes within an order's distances of a linked victim device, and the victim
device's own silence.

Every usable fix of either side (the tag, or a victim device linked to the subject: config.
VictimLink) is paired with the other side's latest fix, if that is at most `pair_window_s`
older; each side's fixes pass the same track checks as the zone rule's (track.py: jumps
dropped, accuracy inflated where the track cannot explain a fix; fixes it doubted and later
vindicates are judged again, `_vindicate`). With d the great-circle
distance between the pair and u = k·√(a_tag² + a_victim²) + move_mps·|Δt| (both believed
accuracies, plus how far a person on foot may have moved since the older fix):

- *within R with confidence* when d + u <= R (the whole uncertainty is inside);
- *apart with confidence* when d - u >= R + hysteresis_m;
- anything between changes nothing by itself.

Each distance (the order's warning distance, then its alert distance) is judged as a zone edge
is, by the same code (visit.py): a visit opens at the first pair within R at all, dated at the
crossing (interpolated between this pair's distance and the previous one's; with no pair just
before, where the other side's recent fixes cross R: `_crossed`), and becomes a pending episode
at the first pair within R with confidence. While pending it keeps a balance of support: +1 per
pair within R with confidence, -1 per pair beyond R by more than both accuracies (d -
k·√(a_tag² + a_victim²) > R) whose fixes the tracks both explain; it ends as a near miss when
the balance reaches 0, or when nothing has supported it for `evidence_gap_s` of the time both
sides were heard (a side with no fix for longer than `pair_window_s` says nothing either way).
It is confirmed at a supporting pair, or a pair *held* within R (within R by both accuracies,
d + k·√(a_tag² + a_victim²) <= R, with fixes both tracks explain, taken at most `held_gap_s`
apart), once `dwell_s` has passed since the crossing with at least `min_fixes` readings
(supporting pairs whose fixes have both been followed by their side's next fix, or pairs since
the crossing within R by both accuracies whose fixes both tracks explain), if the median
distance of all the pairs since the crossing (at most the last `median_window_s`) is within R:
two people standing just beyond R in a town centre give no pair beyond it by both accuracies,
and a few multipath pairs within it would otherwise confirm. A held pair confirms too because
after the dwell the pair may stand where only such pairs can say it is within R (a bus passed a
victim indoors while her phone got no fix; her next fixes measured him walking off at 171-185
m). It is also confirmed, once due, at a held pair if more than half of the pairs since the
crossing (whatever their median) are held within R too and
those take in at least `min_fixes` fixes of each side: urban multipath that measures two people
147 m apart as 160-190 m with accuracies of 25-40 m leaves no pair within R with the movement
allowance added for minutes. No averaging gain is claimed (the pairs' errors drift together
over tens of seconds): most pairs must each say what one confident pair would, bar the
allowance. Once confirmed only a pair apart with confidence whose fixes both tracks explain
ends it: drift across the distance cannot flap, nor can one doubted pair (as against a pending
approach, it says nothing). A pair whose other fix is older than `pair_window_s` says nothing
(the victim device silent).

At home the tag is in RF mode and takes no GNSS fix: while the subject's home unit reports it
home (presence, until it reports it away, dated at the last beacon that kept it home) the
tag's side is the home's point with accuracy `home_range_m`, how far from its unit a tag is
heard, at the moment of each victim fix — a victim within the alert distance of his home while
he is in is an approach like any other. The home is the one home zone's point; with several
(two addresses), the one nearest the tag's last fix before the report, if within `home_fix_m`
(which zone a unit sits in is not configured: the tag came into its range since that fix).
Nothing places the tag at home while the unit is offline (its link's last will), without a
home zone, or with several and no tag fix near one of them.

When an episode is confirmed the victim device is warned (a COMMAND with cmd_notify, message
NOTIFY_WARNING or NOTIFY_ALERT, which it acknowledges with a command_result; live data only),
and at the first pair that may be within the warning distance both the tag and the victim
device are asked to sample fast for `fast_for_s` (cmd_config CFG_FAST_UNTIL, as near an
exclusion zone; the victim device every 10 s, bounded by its client: home_unit/
victim_device.py).
A tag under an order with a victim device is asked once (per rule state, live data only; the
sink does not repeat a command the device already had) to close its upload batches every
`tag_batch_s` (cmd_config CFG_BATCH_S): with the firmware's default of 10 minutes the backend
would learn of an approach minutes after it happened, whatever the rule did. With its fast
sampling it is asked to upload each fix as it takes it (cmd_config CFG_BATCH_FIXES
`near_batch_fixes`: its confirming fixes then arrive within seconds, not with the next
batch), and for the firmware's batch size again at its first fix after the fast sampling
has run out: a batch setting, unlike CFG_FAST_UNTIL, does not end by itself
(Command.repeats: a setting repeats only its own value).

Victim-safe: what an episode keeps as evidence about the victim's side is its fix's reference,
never its position nor a distance per fix (several distances from known tag positions would
place the victim); details keep the configured distance and the closest seen; the tag's
fixes are evidence as usual.

`VictimSilent` is the victim device's own comms loss: no frame from it for the link's
`silent_s` (else `threshold_s`), dated at its last contact — a type of its own
(victim_device_silent), never the tag's comms_loss.

Everything is on event time: either side's late data is re-evaluated from the snapshot
before it (engine.py), and gives the episodes live data would have."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, NamedTuple

from backend.rules import geo, track, visit
from backend.rules.base import PENDING, Context, Rule
from backend.rules.config import SubjectConfig, VictimLink
from backend.rules.model import HOME_UNIT, TAG, VICTIM, Command, Obs
from firmware import frame as fr
from firmware.config import DEFAULTS as FIRMWARE_DEFAULTS

WARNING = "proximity_warning"
ALERT = "proximity_alert"
SILENT = "victim_device_silent"

# cmd_notify message ids a victim device shows (docs/protocol.md, "Victim device").
NOTIFY_WARNING = 1
NOTIFY_ALERT = 2
NOTIFY_PATTERN = 3  # vibration pattern: long pulses
NOTIFY_REPEATS = 5


# The tag's upload batch period as the firmware ships it, given back when no victim link
# remains (the order's tag_batch_s is for a bilateral order only), and its batch size,
# given back when its fast sampling near a victim ends.
FIRMWARE_BATCH_S = int(str(FIRMWARE_DEFAULTS["batch_s"]))
FIRMWARE_BATCH_FIXES = int(str(FIRMWARE_DEFAULTS["batch_fixes"]))


def _linked(link: VictimLink, t: int) -> bool:
    return link.start <= t and (link.end is None or t < link.end)


@dataclass(frozen=True)
class ProximityParams:
    dwell_s: int = 60
    min_fixes: int = 2
    k: float = 1.0
    hysteresis_m: float = 25.0
    max_accuracy_m: float = 100.0
    max_speed_mps: float = 70.0
    move_mps: float = 2.5  # how far a person on foot may have moved, unseen by their device
    reanchor_fixes: int = 3
    pair_window_s: int = 90  # the other side's fix must be at most this much older
    evidence_gap_s: int = 180  # a pending episode without support for this long ends
    # Confirmation also needs the median distance of the pairs since the crossing, at most
    # this many seconds back, within R: a few multipath pairs among many beyond R do not
    # confirm. Since the crossing (not a fixed minute) so that a run of one side's outliers
    # in a real approach (a phone indoors) is outvoted by the whole approach.
    median_window_s: int = 180
    # A pair counts toward the pairs' own confirmation (_held_within) only if its fixes are
    # at most this far apart: the tag's fast fix interval, at which both sides sample near a
    # victim, so it is a distance at one moment give or take move_mps times this.
    held_gap_s: int = int(str(FIRMWARE_DEFAULTS["fix_fast_s"]))
    fast_for_s: int = 900
    tag_batch_s: int = 60  # the tag's upload batches close this often under a bilateral order
    # ... and close at this many fixes while it samples fast near a victim (for at most
    # fast_for_s after the last pair that may be within the warning distance): with 60 s
    # batches an approach's confirming fixes reached the backend a minute late, and with
    # batches closing every 15 s, as often as it fixes, each batch's first fix still waited
    # 15 s (an approach 122 s late).
    near_batch_fixes: int = 1
    # Where a tag its home unit hears (presence: home) may be, around the home's point: the
    # tag's accuracy in a pair while it is at home (in RF mode, without GNSS fixes).
    home_range_m: float = geo.HOME_RANGE_M
    # With several home zones, how far from the tag's last fix its home may be (geo.which_home).
    home_fix_m: float = geo.HOME_FIX_M


# A tag reading [t, lat, lon, accuracy, ref, consistent, device, home] is the home's (at home,
# `_tag_reading`) when it has this element and it is true; a track's fixes stop before it.
HOME_READING = 7

# The recent pairs kept per victim device for the median (bounds the rule's state: with both
# sides fixing every 10 s there are about 36 in median_window_s).
MAX_RECENT = 64
# The fixes each side's track keeps of the last pair_window_s (`_crossed`): a tag fixing every
# 15 s keeps 6, a victim device every 10 s 9.
MAX_SEEN = 16


class Pair(NamedTuple):
    """A judged pair of fixes: distance, uncertainty (`a` of it the fixes' believed
    accuracies, the rest how far either may have moved between them), whether both tracks
    explain their fixes, and the event time and reference of the fix that made it."""

    d: float
    u: float
    a: float
    consistent: bool
    t: int
    ref: str
    fixes: tuple[int, int]  # the event times of its tag fix and its victim fix
    home: bool = False  # the tag's side is its home (`_tag_reading`), not a fix
    # Each side's believed accuracy and whether its track explains it: tag, victim.
    sides: tuple[float, float, bool, bool] = (0.0, 0.0, False, False)


class Proximity(Rule):
    name = "proximity"
    version = 1
    Params = ProximityParams

    def initial(self, config: SubjectConfig, start: int) -> dict[str, Any]:
        # tracks: per side ("tag" or the victim device's id) the track's anchor and last
        # accepted fix [t, lat, lon, believed accuracy, ref, consistent, device] (and seen: its
        # explained fixes of the last pair_window_s, [t, lat, lon]); prev: per victim
        # device, the last pair [t, d]; recent: per victim device, the pairs of the last
        # median_window_s (_row: [t, d, a, tag fix's t, victim fix's t, consistent, home];
        # states stored before keep fewer); home: the presence report placing the tag at home
        # (absent or None: not at home); visit: per "device/type", the distance's visit
        # (visit.py; plus upto, the last time it was judged, unheard: see _unheard, and
        # fixes: its supporting pairs' fix times);
        # fast_until and victim_fast (per victim device): the last fast-sampling requests;
        # batched: tags asked for tag_batch_s; near_batched: those asked for near_batch_fixes
        # since (given the firmware's back once the tag's fast sampling ends); released: tags
        # under no link any more, asked for the firmware's period (live, as batched).
        return {
            "open": {},
            "tracks": {},
            "prev": {},
            "recent": {},
            "visit": {},
            "fast_until": 0,
            "victim_fast": {},
            "jumps": 0,
            "batched": [],
            "near_batched": [],
            "released": [],
        }

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        links = ctx.config.victims
        if not links:
            return
        if obs.role == HOME_UNIT:
            self._home_unit(st, ctx, obs)
            return
        if track.usable(obs, self.p.max_accuracy_m, TAG):
            side, others = "tag", [(str(v.device), v) for v in links]
        elif track.usable(obs, self.p.max_accuracy_m, VICTIM):
            link = next((v for v in links if v.device == obs.device), None)
            if link is None:
                return
            side, others = str(obs.device), [("tag", link)]
        else:
            return
        # When each side was last heard before this fix: a pending approach does not go stale
        # while one side could say nothing (a victim's phone indoors getting no fix).
        heard = {s: int(tr["last"][0]) for s, tr in st["tracks"].items() if tr.get("last")}
        if self._home_at(st, ctx) is not None:
            heard["tag"] = obs.t  # its home unit hears it all along
        fix = self._accept(st, obs, side)
        if fix is None:
            return
        self._vindicate(st, ctx, obs, side)
        near = st.setdefault("near_batched", [])  # absent from states stored before it
        ordered = [v for v in links if _linked(v, obs.t)]
        # Not while near (a settled state folded without live data never lists the tag as
        # batched): asked at its first fix after. With the period, the firmware's batch
        # size: rules restarted from stored data (a new configuration) may have ended a
        # nearness whose end they could not send.
        if side == "tag" and ctx.live and ordered and obs.device not in st["batched"] + near:
            st["batched"].append(obs.device)
            self._ask(ctx, obs.device, fr.CFG_BATCH_S, self.p.tag_batch_s, "bilateral order", obs)
            self._ask(ctx, obs.device, fr.CFG_BATCH_FIXES, FIRMWARE_BATCH_FIXES, "bilateral order",
                      obs)  # fmt: skip
        for other, link in others:
            there = (
                self._tag_reading(st, ctx, obs.t)
                if other == "tag"
                else st["tracks"].get(other, {}).get("last")
            )
            tag_fix, victim_fix = (fix, there) if side == "tag" else (there, fix)
            pair = self._pair(tag_fix, victim_fix, obs)
            if pair is not None:
                self._recent(st, link, pair)
            sides = [heard.get("tag"), heard.get(str(link.device))]
            for type_, radius in ((WARNING, link.warn_m), (ALERT, link.alert_m)):
                self._judge(st, ctx, obs, link, type_, radius, pair, sides)
            if pair is not None:
                st["prev"][str(link.device)] = [pair.t, pair.d]
                if pair.d - pair.u <= link.warn_m and tag_fix is not None and link in ordered:
                    track.ask_fast(
                        st, ctx, tag_fix[6], obs.t, obs.ref, self.p.fast_for_s, "near victim"
                    )
                    # Its fixes uploaded as promptly as they are taken, for as long.
                    if tag_fix[6] not in near:
                        near.append(tag_fix[6])
                        self._ask(ctx, tag_fix[6], fr.CFG_BATCH_FIXES, self.p.near_batch_fixes,
                                  "near victim", obs)  # fmt: skip
                    # The victim's side as dense as the tag's (its phone fixes every 30 s
                    # otherwise): a sparse side is what made approaches late.
                    asked = st.setdefault("victim_fast", {})
                    vfast = asked.setdefault(str(link.device), {"fast_until": 0})
                    track.ask_fast(
                        vfast, ctx, link.device, obs.t, obs.ref, self.p.fast_for_s, "near subject"
                    )
        if side == "tag":
            self._batch_back(st, ctx, obs, ordered, heard.get("tag"))

    def _home_unit(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        """A presence report from the subject's home unit (home: the tag is within
        home_range_m of its home's point, `_which_home`, until it is reported away), or its
        link: while the unit is offline its presence cannot be known (its reports, queued
        meanwhile, come in event time, before its return online)."""
        heard = ctx.config.presence(obs)
        if heard is not None:
            at = self._which_home(st, ctx) if heard else None
            st["home"] = (
                {"tag": obs.v("tag"), "evidence": obs.evidence(), "at": at} if heard else None
            )
        elif obs.name == "link" and st.get("home"):
            st["home"]["offline"] = obs.v("state") == 0

    def _which_home(self, st: dict[str, Any], ctx: Context) -> list[float] | None:
        """[lat, lon] of the home a presence report's unit is in (geo.which_home: with several,
        the one nearest the tag's last fix, within `home_fix_m`)."""
        homes = ctx.config.homes
        last = st["tracks"].get("tag", {}).get("last")
        i = geo.which_home(homes, None if last is None else (last[1], last[2]), self.p.home_fix_m)
        return None if i is None else list(homes[i])

    @staticmethod
    def _home_at(st: dict[str, Any], ctx: Context) -> tuple[float, float] | None:
        """(lat, lon) of the tag while its home unit hears it; None when not at home, its unit
        offline or which home unknown."""
        home: dict[str, Any] | None = st.get("home")  # absent from states stored before it
        if home is None or home.get("offline"):
            return None
        if "at" not in home:  # stored before several homes were told apart
            homes = ctx.config.homes
            return homes[0] if len(homes) == 1 else None
        return None if home["at"] is None else (home["at"][0], home["at"][1])

    def _tag_reading(self, st: dict[str, Any], ctx: Context, t: int) -> list[Any] | None:
        """The tag's side at `t` as a fix [t, lat, lon, accuracy, ref, consistent, device]: at
        home (its home unit hears it) the home's point with `home_range_m`, taken at `t` (a
        home unit hears a tag continuously; no spike test doubts it) and marked as the home's
        (HOME_READING), else its track's last accepted fix."""
        point = self._home_at(st, ctx)
        if point is None:
            last: list[Any] | None = st["tracks"].get("tag", {}).get("last")
            return last
        home, (lat, lon) = st["home"], point
        return [t, lat, lon, self.p.home_range_m, home["evidence"]["ref"], True, home["tag"], True]

    def _batch_back(
        self,
        st: dict[str, Any],
        ctx: Context,
        obs: Obs,
        ordered: list[VictimLink],
        prev: int | None,
    ) -> None:
        """At a tag fix: the firmware's batch size back from a fix at a time once its fast
        sampling has ended (a pair in apply would have renewed it) or a link has ended since
        its last fix. Remembered on stored data too, as fast_until is, so a re-evaluation
        cannot leave a tag uploading every fix. A tag under no link any more is asked for the
        firmware's period and batch size once per live state (the sink sends each only if its
        last differs): unlinking restarts the rules from stored data, whose folds send
        nothing, so neither list says what the tag was last asked."""
        near, tag = st["near_batched"], obs.device
        released = st.setdefault("released", [])
        ended = prev is not None and any(
            v.end is not None and prev < v.end <= obs.t for v in ctx.config.victims
        )
        if tag in near and (obs.t >= st["fast_until"] or ended or not ordered):
            near.remove(tag)
            self._ask(ctx, tag, fr.CFG_BATCH_FIXES, FIRMWARE_BATCH_FIXES, "away from victim", obs)
        if ordered:
            if tag in released:
                released.remove(tag)
            return
        if not any(v.start <= obs.t for v in ctx.config.victims):
            return  # a link yet to start: the tag has its firmware's period
        if tag in st["batched"]:
            st["batched"].remove(tag)
        if ctx.live and tag not in released:
            released.append(tag)
            self._ask(ctx, tag, fr.CFG_BATCH_S, FIRMWARE_BATCH_S, "no victim order", obs)
            self._ask(ctx, tag, fr.CFG_BATCH_FIXES, FIRMWARE_BATCH_FIXES, "no victim order", obs)

    @staticmethod
    def _ask(ctx: Context, device: int, key: int, value: int, reason: str, obs: Obs) -> None:
        """A batch setting (CFG_BATCH_S, CFG_BATCH_FIXES) for a tag (live data only; the sink
        sends it unless the tag's last one was the same: Command.repeats)."""
        if ctx.live:
            ctx.commands.append(Command(device, key, value, reason, obs.ref, min_gap=1))

    def _accept(self, st: dict[str, Any], obs: Obs, side: str) -> list[Any] | None:
        """The side's fix as the track believes it, or None for a jump."""
        tr = st["tracks"].setdefault(side, {"last": None})
        lat, lon, acc = obs.v("lat_e7") / 1e7, obs.v("lon_e7") / 1e7, obs.v("acc_dm") / 10
        gc = geo.great_circle
        if track.is_jump(tr["last"], obs.t, lat, lon, acc, self.p.max_speed_mps, gc):
            st["jumps"] += 1
            return None
        p = self.p
        believed = track.believed(
            tr, obs.t, lat, lon, acc, p.move_mps, p.max_speed_mps, p.reanchor_fixes, gc, obs.ref
        )
        tr["last"] = [obs.t, lat, lon, believed, obs.ref, believed == acc, obs.device]
        # The fixes its track explains of the last pair_window_s (`_crossed`).
        seen = [h for h in tr.get("seen") or [] if h[0] >= obs.t - p.pair_window_s]
        if believed == acc:
            seen.append([obs.t, lat, lon])
        tr["seen"] = seen[-MAX_SEEN:]
        self._doubt(st, side, tr.get("spiked") or [])
        return list(tr["last"])

    def _doubt(self, st: dict[str, Any], side: str, spiked: list[int]) -> None:
        """Fixes of `side` its track has since found to be spikes (track.believed): the recent
        pairs that used them count as doubted from now on (no reading, no held pair), and a
        pending approach loses the support of those that supported it."""
        if not spiked:
            return
        col, rows = (
            (3, st["recent"].values()) if side == "tag" else (4, [st["recent"].get(side) or []])
        )
        for recent in rows:
            for r in recent:
                if len(r) > 5 and r[col] in spiked:
                    r[5] = False
        for key, vs in st["visit"].items():
            device, type_ = key.split("/")
            if (side != "tag" and device != side) or "fixes" not in vs:
                continue
            if self._confirmed(st, type_, vs):
                continue
            gone = [f for f in vs["fixes"] if f[col - 3] in spiked]
            vs["fixes"] = [f for f in vs["fixes"] if f[col - 3] not in spiked]
            visit.withdraw(vs, len(gone))

    def _vindicate(self, st: dict[str, Any], ctx: Context, obs: Obs, side: str) -> None:
        """Fixes of `side` its track doubted and has since found to be where the wearer was
        (track.believed: a straight run it re-anchored on, the wearer moving on): the recent
        pairs that used them are judged again at their reported accuracies, and a pending
        approach gains as support those now within R with confidence, as it would have had
        at the time; one after the dwell confirms it now. A perpetrator on a bus passing a
        victim at 5 m was missed: his true fixes at 8 m/s were doubted until it had gone.
        Recent pairs stored without each side's accuracy are left as they are."""
        found = st["tracks"][side].get("vindicated")
        if not found:
            return
        fixes = {int(t): (float(acc), str(ref)) for t, acc, ref in found}
        col = 3 if side == "tag" else 4  # the side's fix time in a recent pair
        for link in ctx.config.victims:
            if side != "tag" and str(link.device) != side:
                continue
            again = []
            for r in st["recent"].get(str(link.device)) or []:
                if len(r) > 10 and r[col] in fixes:
                    r[col + 4], r[col + 6] = fixes[r[col]][0], True
                    r[2], r[5] = round(self.p.k * math.hypot(r[7], r[8]), 1), bool(r[9] and r[10])
                    again.append(r)
            for type_, radius in ((WARNING, link.warn_m), (ALERT, link.alert_m)):
                vs = st["visit"].get(f"{link.device}/{type_}")
                if vs is None or self._confirmed(st, type_, vs):
                    continue
                for r in again:
                    u = r[2] + self.p.move_mps * abs(r[3] - r[4])
                    if not (r[5] and r[0] >= vs["since"] and r[1] + u <= radius):
                        continue
                    pair = Pair(r[1], u, r[2], True, r[0], fixes[r[col]][1], (r[3], r[4]),
                                bool(r[6]), (r[7], r[8], True, True))  # fmt: skip
                    after = r[0] >= vs["since"] + self.p.dwell_s
                    self._support(st, ctx, obs, link, type_, vs, pair, self._seen(pair), after)

    def _pair(
        self, tag_fix: list[Any] | None, victim_fix: list[Any] | None, obs: Obs
    ) -> Pair | None:
        if tag_fix is None or victim_fix is None:
            return None
        gap = abs(tag_fix[0] - victim_fix[0])
        if gap > self.p.pair_window_s:
            return None
        d = geo.great_circle(tag_fix[1], tag_fix[2], victim_fix[1], victim_fix[2])
        a = self.p.k * math.hypot(tag_fix[3], victim_fix[3])
        consistent = bool(tag_fix[5] and victim_fix[5])
        fixes = (int(tag_fix[0]), int(victim_fix[0]))
        home = len(tag_fix) > HOME_READING and bool(tag_fix[HOME_READING])
        sides = (float(tag_fix[3]), float(victim_fix[3]), bool(tag_fix[5]), bool(victim_fix[5]))
        u = a + self.p.move_mps * gap
        return Pair(d, u, a, consistent, obs.t, obs.ref, fixes, home, sides)

    @staticmethod
    def _row(pair: Pair) -> list[Any]:
        """A pair as the recent pairs keep it (_held_within; each side's accuracy and whether
        its track explains it, for `_vindicate`)."""
        a_tag, a_victim, c_tag, c_victim = pair.sides
        return [pair.t, round(pair.d, 1), round(pair.a, 1), *pair.fixes, pair.consistent,
                pair.home, round(a_tag, 1), round(a_victim, 1), c_tag, c_victim]  # fmt: skip

    @staticmethod
    def _followed(st: dict[str, Any], link: VictimLink, r: list[Any]) -> bool:
        """Whether a recent pair may count as a reading now: a pair of two fixes at once; a
        home pair (the tag's side is its home, without noise of its own, so the victim's fix
        is all it measures) once the victim's next fix has followed it, as the spike test
        needs to judge that fix: two indoor multipath fixes a minute apart, 100 m and 176 m
        toward his home, confirmed an alert on a victim 241 m from it."""
        if len(r) < 7 or not r[6]:
            return True
        return bool(r[4] < st["tracks"][str(link.device)]["last"][0])

    def _recent(self, st: dict[str, Any], link: VictimLink, pair: Pair) -> None:
        recent = st["recent"].setdefault(str(link.device), [])
        recent.append(self._row(pair))
        keep = [r for r in recent if r[0] > pair.t - self.p.median_window_s]
        recent[:] = keep[-MAX_RECENT:]

    def _mostly_within(
        self, st: dict[str, Any], link: VictimLink, radius: float, since: int
    ) -> bool:
        """Whether the median distance of the recent pairs since `since` is within `radius`."""
        recent = [r[1] for r in st["recent"].get(str(link.device)) or [] if r[0] >= since]
        return bool(recent) and statistics.median(recent) <= radius

    def _held_within(self, st: dict[str, Any], link: VictimLink, radius: float, since: int) -> bool:
        """Whether the pairs since `since` hold the approach within `radius` by themselves:
        more than half of them are held within (`_held`), and those take in at least
        `min_fixes` fixes of each side (a fix is in every pair until the other side's next
        fix: one outlying fix makes two pairs or more). A pair whose accuracies alone reach R
        could not be within whatever it measured and says nothing; pairs stored without
        their fixes do not count."""
        recent = [r for r in st["recent"].get(str(link.device)) or [] if r[0] >= since]
        recent = [r for r in recent if len(r) > 5 and r[2] < radius]
        within = [r for r in recent if self._held(r, radius) and self._followed(st, link, r)]
        if 2 * len(within) <= len(recent):
            return False
        fixes = min(len({r[3] for r in within}), len({r[4] for r in within}))
        return bool(fixes >= self.p.min_fixes)

    def _held(self, r: list[Any], radius: float) -> bool:
        """Whether a recent pair [t, d, a, tag fix's t, victim fix's t, consistent] is within
        `radius` by both fixes' accuracies, with fixes both tracks explain (a doubted pair is
        not) taken at most `held_gap_s` apart."""
        return bool(r[5]) and abs(r[3] - r[4]) <= self.p.held_gap_s and r[1] + r[2] <= radius

    def _readings(
        self, st: dict[str, Any], link: VictimLink, radius: float, vs: dict[str, Any], tag_t: int
    ) -> int:
        """The independent readings of a pending approach: its supporting pairs whose fixes
        have both been followed by their side's next fix (their tracks' spike test has then
        judged them: an outlier toward the other side supports, and only the true fix after
        it shows it to be one), or if more, the recent pairs since the crossing within R by
        both fixes' accuracies (where each was when it was taken: the movement allowance is
        the confirming pair's question, whether they are within R now) whose fixes both
        tracks explain: a fix the track doubts is no reading of where its wearer is. A
        victim's phone indoors (accuracies of 30-45 m) left one pair in minutes within R with
        the allowance added, while every pair of the approach measured well within it. Recent
        pairs stored without whether the tracks explain them, and visits stored without
        their supporting pairs' fixes (older states), count only as supporting pairs.
        `tag_t`: the time of the tag's latest reading (at home: now, `_tag_reading`)."""
        recent = st["recent"].get(str(link.device)) or []
        since = int(vs["since"])
        within = sum(
            1
            for r in recent
            if r[0] >= since
            and len(r) > 5
            and r[5]
            and r[1] + r[2] <= radius
            and self._followed(st, link, r)
        )
        if "fixes" not in vs:  # a visit stored before it kept its supporting pairs' fixes
            return max(int(vs["n"]), within)
        victim_t = st["tracks"][str(link.device)]["last"][0]
        judged = sum(1 for f in vs["fixes"] if f[0] < tag_t and f[1] < victim_t)
        return max(judged, within)

    def _judge(
        self,
        st: dict[str, Any],
        ctx: Context,
        obs: Obs,
        link: VictimLink,
        type_: str,
        radius: float,
        pair: Pair | None,
        heard: list[int | None],
    ) -> None:
        key = f"{link.device}/{type_}"
        vs = st["visit"].get(key)
        if vs is not None:
            self._unheard(vs, obs.t, heard)
        confirmed = vs is not None and self._confirmed(st, type_, vs)
        if vs is not None and not confirmed and visit.stale(vs, obs.t, self.p.evidence_gap_s):
            self.end(st, ctx, type_, vs["slot"], obs.t, obs.t)
            del st["visit"][key]
            vs = None
        if pair is None:
            return
        within = pair.d + pair.u <= radius
        apart = pair.d - pair.u >= radius + self.p.hysteresis_m
        over = pair.d <= radius
        # Against a pending approach: beyond R by more than both fixes' accuracies (where
        # they were, as a zone counts a fix outside its edge; the movement allowance is for
        # where they may be now). Merely beyond R is not enough here, unlike at a fixed
        # edge: both ends are measured, and a victim's phone indoors at 40 m ended real
        # approaches that way.
        beyond = pair.d - pair.a > radius
        if vs is not None:
            spent = not confirmed and beyond and pair.consistent and visit.refute(vs)
            if (apart and confirmed and pair.consistent) or spent:
                self.end(st, ctx, type_, vs["slot"], obs.t, obs.t, evidence=self._seen(pair))
                del st["visit"][key]
            elif within:
                self._support(st, ctx, obs, link, type_, vs, pair)
            elif not confirmed and vs["n"] and self._held(self._row(pair), radius):
                self._confirm_if_due(st, ctx, obs, link, type_, vs, pair, supporting=False)
            return
        if not over:
            return
        since = obs.t
        prev = st["prev"].get(str(link.device))
        if prev is None or obs.t - prev[0] > self.p.pair_window_s:
            since = self._crossed(st, obs, link, pair, radius)
        elif prev[1] > radius:
            f = (prev[1] - radius) / (prev[1] - pair.d)
            since = int(prev[0] + f * (obs.t - prev[0]))
        vs = visit.opened(since, obs.t, slot=f"{link.device}@{since}")
        st["visit"][key] = vs
        if within:
            self._support(st, ctx, obs, link, type_, vs, pair)

    def _crossed(
        self, st: dict[str, Any], obs: Obs, link: VictimLink, pair: Pair, radius: float
    ) -> int:
        """When an approach first seen at `obs` crossed `radius`, with no pair just before it
        (one side had been silent: a victim's phone indoors getting no fix): where the other
        side's fixes of the last pair_window_s (those its track explains), each measured
        from this fix, cross it, interpolated as between two pairs; `obs.t` if they do not
        (all within: no crossing seen; or none). Without it the dwell ran from the silent
        side's first fix: a perpetrator walked in past a victim indoors whose phone fixed
        50 s into the approach, and had turned away by the time the dwell had passed."""
        if pair.home:
            return obs.t
        here, other = ("tag", str(link.device)) if obs.role == TAG else (str(obs.device), "tag")
        fix = st["tracks"][here]["last"]
        after: tuple[int, float] | None = None
        for h in reversed(st["tracks"].get(other, {}).get("seen") or []):
            if h[0] < obs.t - self.p.pair_window_s:
                break
            d = geo.great_circle(fix[1], fix[2], h[1], h[2])
            if d <= radius:
                after = (int(h[0]), d)
                continue
            if after is not None:
                return int(h[0] + (d - radius) / (d - after[1]) * (after[0] - h[0]))
            break
        return obs.t

    def _unheard(self, vs: dict[str, Any], t: int, heard: list[int | None]) -> None:
        """Count into the visit's `unheard` the part of the time since it was last judged
        (`upto`) in which a side's last fix (`heard`: each side's before this one) was older
        than `pair_window_s`: no pair could say anything then, so the evidence gap does not
        run (visit.stale). Judged at every fix of either side, so each side's last fix is
        at or before `upto`."""
        upto = int(vs.get("upto", vs["last"]))
        if t <= upto:
            return
        sides = [h for h in heard if h is not None]
        until = min(sides) + self.p.pair_window_s if len(sides) == len(heard) else upto
        vs["unheard"] = int(vs.get("unheard", 0)) + t - max(upto, min(t, until))
        vs["upto"] = t

    def _support(
        self,
        st: dict[str, Any],
        ctx: Context,
        obs: Obs,
        link: VictimLink,
        type_: str,
        vs: dict[str, Any],
        pair: Pair,
        seen: dict[str, Any] | None = None,
        confirm: bool = True,
    ) -> None:
        """A pair within R with confidence supports the visit (`seen`: its evidence, by
        default the fix `obs` or the pair's reference), and confirms it once due unless
        `confirm` is false."""
        visit.support(vs, obs.t)
        # Its fixes, for _readings and for _doubt (bounded as the recent pairs are).
        fixes = vs.setdefault("fixes", [])
        fixes.append(list(pair.fixes))
        del fixes[:-MAX_RECENT]
        radius = link.alert_m if type_ == ALERT else link.warn_m
        if vs["n"] == 1:
            self.begin(
                st,
                ctx,
                type_,
                vs["slot"],
                vs["since"],
                grace_s=None,
                evidence=seen or self._seen(pair, obs),
                details={"victim_device": link.device, "distance_m": radius},
                severity="high" if type_ == ALERT else "medium",
            )
        else:
            self.evidence(st, type_, vs["slot"], seen or self._seen(pair, obs))
        if pair.home:
            # The tag's side: the presence report that placed it at home.
            self.evidence(st, type_, vs["slot"], st["home"]["evidence"])
        cur = self.slot(st, type_, vs["slot"])
        if cur is not None:
            details = cur["ep"]["details"]
            details["closest_m"] = min(details.get("closest_m", 2**31), round(pair.d))
        if confirm:
            self._confirm_if_due(st, ctx, obs, link, type_, vs, pair, supporting=True)

    def _confirm_if_due(
        self,
        st: dict[str, Any],
        ctx: Context,
        obs: Obs,
        link: VictimLink,
        type_: str,
        vs: dict[str, Any],
        pair: Pair,
        supporting: bool,
    ) -> None:
        """Confirm a pending approach at `pair` once the dwell has passed since the crossing
        with min_fixes readings, if either this pair supports it (within R with confidence)
        or is held within R (`_held`: by both accuracies, its fixes at most `held_gap_s`
        apart), and the median distance of the pairs since the crossing is within R
        (`_mostly_within`); or if this pair is held within R and so are most pairs since the
        crossing (`_held_within`: what the pairs say together, when the movement allowance
        leaves none of them confident). A held pair confirms with the median because after
        the dwell the pair may stand where only such pairs say it is within R: a bus passed
        a victim indoors within metres while her phone got no fix, and her next fixes, 20 s
        apart, measured him walking off at 171-185 m."""
        radius = link.alert_m if type_ == ALERT else link.warn_m
        tag = self._tag_reading(st, ctx, obs.t)  # the tag's latest reading: `_readings`
        readings = self._readings(st, link, radius, vs, obs.t if tag is None else tag[0])
        if not visit.due(vs, obs.t, readings, self.p.min_fixes, self.p.dwell_s):
            return
        since = int(vs["since"])
        row = self._row(pair)
        held = self._held(row, radius) and self._followed(st, link, row)
        confident = (supporting or held) and self._mostly_within(st, link, radius, since)
        if not confident and not self._held_within(st, link, radius, since):
            return
        if not supporting:
            self.evidence(st, type_, vs["slot"], self._seen(pair, obs))
        was = self._confirmed(st, type_, vs)
        self.confirm(st, type_, vs["slot"], obs.t)
        if not was and ctx.live:
            message = NOTIFY_ALERT if type_ == ALERT else NOTIFY_WARNING
            ctx.commands.append(
                Command(
                    link.device,
                    message,
                    vs["since"],
                    f"{type_} to victim device",
                    obs.ref,
                    min_gap=1,
                    cmd=fr.CMD_NOTIFY,
                )
            )

    @staticmethod
    def _seen(pair: Pair, obs: Obs | None = None) -> dict[str, Any]:
        """Evidence of a pair: the tag's fix as it was, or only the victim fix's reference.
        Never the victim's position, nor a distance per fix: distances from several known
        tag positions would place the victim (the episode keeps only the closest)."""
        if obs is not None and obs.role == TAG:
            return obs.evidence()
        return {"t": pair.t, "ref": pair.ref, "name": "proximity"}

    def _confirmed(self, st: dict[str, Any], type_: str, vs: dict[str, Any]) -> bool:
        cur = self.slot(st, type_, vs["slot"])
        return cur is not None and cur["ep"]["confirmed_t"] != PENDING


@dataclass(frozen=True)
class SilentParams:
    threshold_s: int = 1800


class VictimSilent(Rule):
    name = "victim_silent"
    version = 1
    Params = SilentParams

    def initial(self, config: SubjectConfig, start: int) -> dict[str, Any]:
        # Per victim device: its last contact, counted from the link (or the evaluation's
        # start if later): a device cannot be silent before it is linked.
        return {
            "open": {},
            "last": {str(v.device): max(v.start, start) for v in config.victims},
        }

    def _threshold(self, link: VictimLink) -> int:
        return link.silent_s or self.p.threshold_s

    @staticmethod
    def _judged(ctx: Context, link: VictimLink, t: int) -> bool:
        """Whether a silence due at `t` is one: before the link ends, and the orders."""
        return (link.end is None or t < link.end) and ctx.config.monitored(t)

    def _links(self, ctx: Context) -> dict[str, VictimLink]:
        return {str(v.device): v for v in ctx.config.victims}

    def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
        for dev, link in self._links(ctx).items():
            last = st["last"].get(dev)
            limit = self._threshold(link)
            if last is None or self.is_open(st, SILENT, dev):
                continue
            if last + limit < to and self._judged(ctx, link, last + limit):
                self.begin(
                    st,
                    ctx,
                    SILENT,
                    dev,
                    last,
                    grace_s=limit,
                    details={"victim_device": link.device, "threshold_s": limit},
                    severity="medium",
                )
        super().advance(st, ctx, to)

    def due(self, st: dict[str, Any], ctx: Context) -> int | None:
        cands = [self._pending_due(st)]
        for dev, link in self._links(ctx).items():
            last = st["last"].get(dev)
            due = None if last is None else last + self._threshold(link)
            if (
                due is not None
                and self._judged(ctx, link, due)
                and not self.is_open(st, SILENT, dev)
            ):
                cands.append(due + 1)
        return min((c for c in cands if c is not None), default=None)

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.role != VICTIM or obs.name == "security":
            return
        dev = str(obs.device)
        self.end(st, ctx, SILENT, dev, obs.t, obs.t, evidence={"t": obs.t, "ref": obs.ref})
        last = st["last"].get(dev)
        st["last"][dev] = obs.t if last is None else max(last, obs.t)
