# Backend-to-tag messages on the tag's down topic: ACK frames (free stored frames) and COMMAND
# frames (signed, replay-protected by a command sequence persisted before anything runs).
# Anything that fails is refused, counted, and (for commands) answered with a result code.
from firmware import frame as fr
from firmware.runtime import const

ACK = 1
COMMAND = 2
REFUSED = 0
DUPLICATE = 3  # a command already run, delivered again by the other path: not run again
_WINDOW = const(32)  # command numbers below cmd_seq whose fate the state file keeps
# Bit masks, not const(): above a 32-bit port's small ints (a 32-bit record; 33 with cmd_seq).
_MASK = 0xFFFFFFFF
_MASK33 = 0x1FFFFFFFF


class Downlink:
    """Verifies down-topic frames and decides whether a command runs.

    A command reaches the tag twice when it is in RF mode or comes home: through the modem's
    persistent MQTT session and through the home unit, which holds a tag's commands while it
    is away and writes them when it comes back, even if the modem brought them meanwhile.
    So beside the last accepted number (state "cmd_seq") the state file keeps "cmd_ran": bit
    i set means command cmd_seq - 1 - i ran. A verified command numbered cmd_seq or marked
    there is a DUPLICATE: answered as such (fr.RESULT_DUPLICATE), never run twice; that
    holds across reboots (both are written in one atomic replace of the state file, before
    the command runs). A number below cmd_seq that did not run (a newer command overtook it)
    or older than the window is refused as a replay: running it now would put an older
    command over a newer one (an older zone set, configuration value or time)."""

    def __init__(self, device: int, key: bytes, state: "object") -> None:
        self.device = device
        self.key = key
        self.state = state  # firmware.state.State: holds "cmd_seq" and "cmd_ran"
        self.refused: dict[str, int] = {}
        self.duplicates = 0
        # Duplicates answered this boot, bit i for command cmd_seq - i: each number's
        # duplicate is answered once, so a captured genuine command sent again and again
        # cannot fill the flash with answers (refusals have their once-a-minute limit).
        self.told = 0

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    def refused_total(self) -> int:
        t = 0
        for k in self.refused:
            t += self.refused[k]
        return t

    def classify(self, data: bytes) -> "tuple[int, object, int]":
        """(ACK, frame, 0) or (COMMAND, frame, 0) for a verified, fresh message; (DUPLICATE,
        frame, RESULT_DUPLICATE or -1 when already answered) for a command already run;
        otherwise (REFUSED, frame or None, result code for a command_result, or -1)."""
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
        last = st.int("cmd_seq", -1)  # type: ignore[attr-defined]
        back = last - f.seq  # how far behind the last accepted number
        if back < 0:
            # Persist first, both in one write: a command that crashes the tag must not run
            # again after the reboot. Shift the record up to the new number, marking the last.
            ran = 0
            if last >= 0 and -back <= _WINDOW:
                ran = ((st.int("cmd_ran") << 1 | 1) << (-back - 1)) & _MASK  # type: ignore[attr-defined]
            self.told = (self.told << -back) & _MASK33 if -back <= _WINDOW else 0
            st.set("cmd_ran", ran, False)  # type: ignore[attr-defined]
            st.set("cmd_seq", f.seq)  # type: ignore[attr-defined]
            return COMMAND, f, 0
        if back == 0 or (back <= _WINDOW and st.int("cmd_ran") >> (back - 1) & 1):  # type: ignore[attr-defined]
            self.duplicates += 1
            if self.told >> back & 1:
                return DUPLICATE, f, -1
            self.told |= 1 << back
            return DUPLICATE, f, fr.RESULT_DUPLICATE
        self._refuse("replay")
        return REFUSED, f, fr.RESULT_REPLAY
