# Backend-to-tag messages on the tag's down topic: ACK frames (free stored frames) and COMMAND
# frames (signed, replay-protected by a command sequence persisted before anything runs).
# Anything that fails is refused, counted, and (for commands) answered with a result code.
from firmware import frame as fr
from firmware.runtime import const

ACK = 1
COMMAND = 2
REFUSED = 0
DUPLICATE = 3  # a command already run, delivered again by the other path: ignored
_RECENT_COMMANDS = const(4)

# cmd_config keys (docs/protocol.md) -> (name, minimum, maximum) that this firmware honours.
COMMAND_KEYS = {
    1: ("fix_moving_s", 5, 3600),
    2: ("fix_fast_s", 5, 600),
    3: ("fix_rest_s", 60, 86400),
    4: ("batch_fixes", 1, 40),
    5: ("batch_s", 10, 86400),
    6: ("fast_until", 0, 0x7FFFFFFF),
    7: ("hdop_max_d", 5, 255),
    8: ("lease_s", 30, 86400),
}


class Downlink:
    def __init__(self, device: int, key: bytes, state: "object") -> None:
        self.device = device
        self.key = key
        self.state = state  # firmware.state.State: holds "cmd_seq"
        self.refused: dict[str, int] = {}
        # MACs of the last commands run: in RF mode a command reaches the tag through the
        # home unit and, later, again through the modem's persistent session. The same bytes
        # again are a duplicate, not a replay attack (a replay needs a different frame to
        # matter: it is the same command, already run).
        self.recent: list[bytes] = []
        self.duplicates = 0

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    def refused_total(self) -> int:
        t = 0
        for k in self.refused:
            t += self.refused[k]
        return t

    def classify(self, data: bytes) -> "tuple[int, object, int]":
        """(ACK, frame, 0) or (COMMAND, frame, 0) for a verified, fresh message; otherwise
        (REFUSED, frame or None, result code for a command_result, or -1 for no answer)."""
        try:
            f = fr.parse(data)
        except fr.DecodeError as e:
            self._refuse("malformed_" + e.reason)
            return REFUSED, None, -1
        if f.device != self.device or f.mtype not in (fr.ACK, fr.COMMAND):
            self._refuse("not_for_us")
            return REFUSED, f, -1
        try:
            fr.verify(f, self.key)
        except fr.DecodeError:
            self._refuse("bad_mac")
            return REFUSED, f, fr.RESULT_BAD_MAC if f.mtype == fr.COMMAND else -1
        if f.mtype == fr.ACK:
            return ACK, f, 0
        st = self.state
        if f.mac in self.recent:
            self.duplicates += 1
            return DUPLICATE, f, -1
        if f.seq <= st.int("cmd_seq", -1):  # type: ignore[attr-defined]
            self._refuse("replay")
            return REFUSED, f, fr.RESULT_REPLAY
        # Persist first: a command that crashes the tag must not run again after the reboot.
        st.set("cmd_seq", f.seq)  # type: ignore[attr-defined]
        self.recent.append(f.mac)
        if len(self.recent) > _RECENT_COMMANDS:
            self.recent.pop(0)
        return COMMAND, f, 0


def config_change(rec: "fr.Record") -> "tuple[str, int] | int":
    """A cmd_config record -> (setting name, value), or a result code if refused."""
    spec = COMMAND_KEYS.get(rec.key)
    if spec is None:
        return fr.RESULT_UNKNOWN
    name, lo, hi = spec
    if rec.value < lo or rec.value > hi:
        return fr.RESULT_BAD_ARGS
    return name, rec.value
