# Replay and reorder detection for a consumer of frames, keyed by (device, boot, seq).
# A sliding window per device (as in IPsec's anti-replay window) tells a first sighting from
# a repeat without keeping every sequence number. What falls outside the window is STALE:
# the guard cannot tell, and the consumer's durable store (primary key) must decide.

NEW = "new"  # first sighting, newest so far
LATE = "late"  # first sighting, but older than the newest seen (reordered or backlog)
DUPLICATE = "duplicate"  # seen before: a retransmission or a replay
STALE = "stale"  # older than the window or an earlier boot: consult the store


class SequenceGuard:
    def __init__(self, window: int = 64) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._state: dict[
            int, list[int]
        ] = {}  # device -> [boot, highest seq, bitmap of seen (bit i = highest - i)]

    def check(self, device: int, boot: int, seq: int) -> str:
        """Classify (boot, seq) for a device without recording it."""
        st = self._state.get(device)
        if st is None or boot > st[0]:
            return NEW
        if boot < st[0]:
            return STALE
        top = st[1]
        if seq > top:
            return NEW
        back = top - seq
        if back >= self.window:
            return STALE
        if (st[2] >> back) & 1:
            return DUPLICATE
        return LATE

    def accept(self, device: int, boot: int, seq: int) -> str:
        """Classify and record; only NEW and LATE change the state."""
        status = self.check(device, boot, seq)
        st = self._state.get(device)
        if status == NEW:
            if st is None or boot > st[0]:
                self._state[device] = [boot, seq, 1]
            elif st is not None:
                shift = seq - st[1]
                bits = (st[2] << shift) if shift < self.window else 0
                st[1] = seq
                st[2] = (bits | 1) & ((1 << self.window) - 1)
        elif status == LATE and st is not None:
            st[2] |= 1 << (st[1] - seq)
        return status

    def highest(self, device: int) -> "tuple[int, int] | None":
        """(boot, seq) of the newest frame accepted from a device, or None."""
        st = self._state.get(device)
        return None if st is None else (st[0], st[1])

    def forget(self, device: int) -> None:
        self._state.pop(device, None)
