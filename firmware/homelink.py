# The tag's end of a contact with its home unit: the GATT service of docs/home-unit.md ("GATT
# contract"), independent of the radio that carries it. A board's radio calls these methods
# as the home unit connects, writes the acknowledgement, reads the offload chunk by chunk and
# writes downlink chunks (ESP32: from the BLE IRQ handler; the simulator board: from its
# socket turn). Each call returns at once; what takes time (mode switches, freeing frames,
# running commands) is left for the application's next poll.
#
# Offload is served only once an acknowledgement has verified in this connection: the frames
# are signed, not encrypted, and only the paired home unit may take them. Reading frees
# nothing: frames leave the flash log only when the backend's ACK (a downlink) verifies.
from firmware.runtime import const

CHUNK = 500  # frame bytes per GATT value after the flags byte (an ATT value is <= 512)
FINAL = 0x01  # flags: this chunk ends a frame
_MAX_DOWNLINK = const(20 + 4096 + 32)  # header + largest body + largest MAC
_MAX_INBOX = const(8)  # downlink frames waiting for the next poll; more are dropped and counted


class HomeLink:
    def __init__(self, prox: "object", store: "object", ticks_ms: "object" = None) -> None:
        self.prox = prox  # firmware.proximity.Proximity
        self.store = store  # firmware.store.Store
        self.ticks_ms = ticks_ms  # the board's tick counter: when each ack arrived
        self.connected = False
        self.authorized = False
        # Verified HomeAcks for the next poll, each with the tick it arrived at: the poll may
        # come a beacon interval later, and the ack's time is applied with that delay.
        self.acks: list[object] = []
        self.ack_ticks: list[int] = []
        self.downlinks: list[bytes] = []  # reassembled downlink frames for the next poll
        self.rx = b""
        self.cur: "tuple[int, int, int] | None" = None  # (boot, seq, segment) being served
        self.cur_data = b""
        self.cur_off = 0
        self.started = False
        self.contacts = 0
        self.offered = 0  # frames handed over (all contacts)
        self.dropped = 0  # downlink chunks/frames refused (oversize, inbox full)

    def connect(self) -> None:
        self.connected = True
        self.authorized = False
        self.rx = b""
        self.started = False  # the offload cursor restarts at each connection
        self.contacts += 1

    def disconnect(self) -> None:
        self.connected = False
        self.authorized = False
        self.rx = b""

    def write_ack(self, data: bytes) -> None:
        a = self.prox.check(data)  # type: ignore[attr-defined]
        if a is not None:
            self.authorized = True
            self.acks.append(a)
            self.ack_ticks.append(self.ticks_ms() if self.ticks_ms is not None else -1)  # type: ignore[operator]

    def _next_frame(self) -> bool:
        st = self.store
        if not self.started:
            self.started = True
            p = st.first_pending()  # type: ignore[attr-defined]
        elif self.cur is None:
            return False
        else:
            n = self.cur[2]
            p = st.next_pending(n, st.index_of(n, self.cur[1]))  # type: ignore[attr-defined]
        self.cur = p
        if p is None:
            return False
        self.cur_data = st.read(p[2], p[1])  # type: ignore[attr-defined]
        self.cur_off = 0
        self.offered += 1
        return True

    def read_offload(self) -> bytes:
        """The next chunk (flags byte + up to CHUNK frame bytes), or b"" when done."""
        if not self.authorized:
            return b""
        at_end = not self.started or self.cur_off >= len(self.cur_data)
        if at_end and not self._next_frame():
            return b""
        d = self.cur_data
        end = min(self.cur_off + CHUNK, len(d))
        flags = FINAL if end == len(d) else 0
        out = bytes((flags,)) + d[self.cur_off : end]
        self.cur_off = end
        if flags:
            self.cur_data = b""
            self.cur_off = 0
        return out

    def write_downlink(self, chunk: bytes) -> None:
        """A downlink chunk. Frames verify themselves (the tag's own key) when the poll hands
        them to the application, so no acknowledgement is needed to accept them."""
        if not chunk:
            return
        self.rx += bytes(chunk[1:])
        if len(self.rx) > _MAX_DOWNLINK:
            self.rx = b""
            self.dropped += 1
            return
        if chunk[0] & FINAL:
            if len(self.downlinks) < _MAX_INBOX:
                self.downlinks.append(self.rx)
            else:
                self.dropped += 1
            self.rx = b""
