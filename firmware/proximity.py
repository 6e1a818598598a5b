# Proximity to the home unit, from the tag's side (docs/firmware.md, "RF home mode"). Pure:
# acknowledgement bytes and times in, decisions out.
#
# The tag beacons; its paired home unit answers beacons that keep it home with a signed
# acknowledgement. An acknowledgement counts only if it verifies with the pairing key, names
# this tag and the paired unit, and echoes a beacon counter the tag sent recently that is
# newer than the last echo it accepted: a recording replayed later, or an ack from a
# neighbour's unit, is refused and counted. k good acks within a window bring the tag into RF
# mode; silence for the lease sends it back to GPS mode. Entering needs several acks and
# leaving needs a whole lease without one, and after a lease expiry the tag holds GPS mode
# for a while: at the edge of range it does not flap.
from firmware import tagbeacon as bc
from firmware.frame import DecodeError
from firmware.runtime import const

_RECENT = const(4)  # beacons whose counter an ack may echo (a minute at the GPS-mode interval)
COUNTER_BLOCK = 1024  # beacon counters reserved per state-file write


class BeaconCounter:
    """The beacon counter, persisted in blocks: the state file holds the ceiling of the block
    in use, so after any reboot the counter starts above every value sent before (skipping at
    most a block) and the file is written once per COUNTER_BLOCK beacons, not per beacon."""

    def __init__(self, state: "object") -> None:
        self.state = state  # firmware.state.State
        self.value: int = state.int("bcn_ceiling")  # type: ignore[attr-defined]
        self.ceiling: int = self.value
        self._reserve()

    def _reserve(self) -> None:
        self.ceiling = self.value + COUNTER_BLOCK
        self.state.set("bcn_ceiling", self.ceiling)  # type: ignore[attr-defined]

    def next(self) -> int:
        v: int = self.value + 1
        self.value = v
        if v >= self.ceiling:
            self._reserve()
        return v


class Proximity:
    def __init__(self, tag: int, cfg: "dict[str, object]") -> None:
        self.tag = tag
        self.cfg = cfg
        unit = cfg.get("home_unit", 0)
        self.home_unit = unit if type(unit) is int else 0
        pk = cfg.get("pairing_key", "")
        self.pkey = bytes.fromhex(pk) if type(pk) is str and len(pk) == 64 else b""
        self.recent: list[int] = []
        self.last_echo = -1
        self.good: list[int] = []  # monotonic ms of good acks within the entry window
        self.lease_until = -1  # while in RF mode: leave when no ack by then
        self.hold_until = 0  # no re-entry before this (after a lease expiry)
        self.refused: dict[str, int] = {}
        self.accepted = 0

    def _i(self, name: str) -> int:
        v = self.cfg[name]
        return v if type(v) is int else 0

    def paired(self) -> bool:
        return self.home_unit != 0 and len(self.pkey) == 32

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    def refused_total(self) -> int:
        t = 0
        for k in self.refused:
            t += self.refused[k]
        return t

    def sent(self, counter: int) -> None:
        """A beacon with this counter went out."""
        self.recent.append(counter)
        if len(self.recent) > _RECENT:
            self.recent.pop(0)

    def check(self, data: bytes) -> "bc.HomeAck | None":
        """Verify an acknowledgement as it is written to the tag. Returns it if good (and
        takes its echo, so the same ack is refused next time); otherwise counts why not."""
        if not self.paired():
            self._refuse("unpaired")
            return None
        try:
            a = bc.decode_home_ack(bytes(data), self.pkey)
        except DecodeError as e:
            self._refuse("mac" if e.reason == "mac" else "malformed")
            return None
        if a.tag != self.tag or a.home_unit != self.home_unit:
            self._refuse("foreign")
            return None
        if a.echo not in self.recent or a.echo <= self.last_echo:
            self._refuse("replay")
            return None
        self.last_echo = a.echo
        self.accepted += 1
        return a

    def lease_ms(self, a: "bc.HomeAck") -> int:
        """The unit offers a lease; the tag's own `lease_s` caps it."""
        return min(a.lease, self._i("lease_s")) * 1000

    def acked(self, a: "bc.HomeAck", now_ms: int, in_rf: bool) -> None:
        """A good ack was taken at now_ms: count it towards entry, extend the lease."""
        window = self._i("rf_enter_window_s") * 1000
        self.good.append(now_ms)
        while self.good and now_ms - self.good[0] > window:
            self.good.pop(0)
        if in_rf:
            self.lease_until = now_ms + self.lease_ms(a)

    def should_enter(self, now_ms: int) -> bool:
        window = self._i("rf_enter_window_s") * 1000
        while self.good and now_ms - self.good[0] > window:
            self.good.pop(0)
        return len(self.good) >= self._i("rf_enter_acks") and now_ms >= self.hold_until

    def entered(self, a: "bc.HomeAck", now_ms: int) -> None:
        self.lease_until = now_ms + self.lease_ms(a)
        self.good = []

    def expired(self, now_ms: int) -> bool:
        return self.lease_until >= 0 and now_ms >= self.lease_until

    def left(self, now_ms: int) -> None:
        self.lease_until = -1
        self.good = []
        self.hold_until = now_ms + self._i("rf_hold_s") * 1000
