# Cellular uplink in GPS mode: powers the modem when there are stored frames to send, sends
# them oldest first within a window, waits for the backend's end-to-end ACK frames (which the
# application hands to the store), resends what is not acknowledged, and backs off
# exponentially when there is no coverage. The modem is off whenever nothing is owed.
#
# Brokers: the list ("brokers", in order: provisioned, or set by cmd_broker) is tried one after
# another; a session that fails moves to the next one at once, and only when every broker of
# the list has failed in a row does the tag back off. It stays with the broker that worked
# (no broker is the "right" one: every ingest worker reads every broker, docs/scaling.md).
# Frames not yet acknowledged are sent again on the new broker; ingest de-duplicates them.
from firmware import board as hal
from firmware import topics
from firmware.runtime import TYPE_CHECKING, const

if TYPE_CHECKING:
    from firmware.board import Modem
    from firmware.energy import Ledger
    from firmware.store import Store

_IDLE = const(0)
_CONNECTING = const(1)
_ONLINE = const(2)
_BACKOFF = const(3)


class Uplink:
    def __init__(
        self,
        modem: "Modem",
        store: "Store",
        device: int,
        cfg: "dict[str, object]",
        password: str,
        ledger: "Ledger | None" = None,
        tx_uas: int = 0,
    ) -> None:
        self.modem = modem
        self.store = store
        self.device = device
        self.cfg = cfg
        self.up_topic = topics.tag_up(device)
        self.down_topic = topics.tag_down(device)
        b = cfg.get("brokers")
        self.brokers: list[str] = b if type(b) is list and b else [""]
        self.broker = 0  # index into brokers of the one in use (or tried next)
        self.tried = 0  # brokers that failed in a row since the last success
        self.password = password  # firmware.brokers.password(key), worked out at boot
        self.state = _IDLE
        self.until_ms = 0  # connect deadline / back-off end / linger end
        self.failures = 0
        self.cursor = (-1, -1)  # (segment, index) of the last frame sent this session
        self.last_progress_ms = 0
        self.resends = 0
        self.sessions = 0
        self.published = 0
        self.urgent = False
        self.ledger = ledger
        self.tx_uas = tx_uas  # charge of one publish burst (board.bursts["modem_tx"])

    def _i(self, name: str) -> int:
        v = self.cfg[name]
        return v if type(v) is int else 0

    def set_brokers(self, brokers: "list[str]") -> None:
        """A new list (cmd_broker): a session in progress stays where it is; the next one
        starts at the new list's first broker."""
        if brokers != self.brokers:
            self.brokers = brokers
            self.broker = 0
            self.tried = 0

    def urgent_now(self) -> None:
        """An alert-class frame was stored: skip any back-off and send it at once."""
        self.urgent = True

    def take_urgent(self) -> bool:
        """Whether an urgent frame was stored since the last call (RF mode hands it to the
        home unit instead: the beacon says so at once)."""
        u = self.urgent
        self.urgent = False
        return u

    def progress(self, now_ms: int) -> None:
        """The application freed frames on an ACK."""
        self.last_progress_ms = now_ms

    def suspend(self, now_ms: int) -> None:
        """RF home mode: the modem goes off whatever it was doing; frames stay in the log (the
        home unit relays them) and the uplink starts afresh if GPS mode returns."""
        if self.state != _IDLE and self.state != _BACKOFF:
            self._power(False, now_ms)
        self.state = _IDLE
        self.failures = 0
        self.tried = 0
        self.urgent = False

    def _power(self, on: bool, now_ms: int) -> None:
        self.modem.power(on)
        if self.ledger is not None:
            self.ledger.set("modem", "on" if on else "off", now_ms)

    def _backoff(self, now_ms: int) -> None:
        self._power(False, now_ms)
        self.state = _BACKOFF
        n = len(self.brokers)
        self.broker = (self.broker + 1) % n
        self.tried += 1
        if self.tried < n:  # a broker of the list not tried since the last success: at once
            self.until_ms = now_ms
            return
        self.tried = 0
        delay = self._i("backoff_min_s") << min(self.failures, 10)
        delay = min(delay, self._i("backoff_max_s"))
        self.failures += 1
        self.until_ms = now_ms + delay * 1000

    def step(self, now_ms: int, client_id: str, moving: bool) -> int:
        """Advance; returns the monotonic ms at which it next needs a step. moving: not at
        rest by the sampler's reckoning (motion within rest_after_s, or fixes wanted fast)."""
        st = self.state
        pending = self.store.pending()
        if st == _BACKOFF:
            # Coverage changes when the wearer moves: then a retry comes within
            # backoff_moving_s (a long back-off that began at rest is cut short), and the long
            # back-off is for a tag at rest in a dead zone, where retrying only spends.
            if moving:
                self.until_ms = min(self.until_ms, now_ms + self._i("backoff_moving_s") * 1000)
            if now_ms >= self.until_ms or self.urgent:
                st = self.state = _IDLE
        if st == _IDLE:
            if pending == 0:
                self.urgent = False
                return -1
            self.urgent = False
            self._power(True, now_ms)
            self.modem.connect(self.brokers[self.broker], client_id, self.password, self.down_topic)
            self.state = _CONNECTING
            self.until_ms = now_ms + self._i("connect_timeout_s") * 1000
            return now_ms + 1000
        if st == _CONNECTING:
            s = self.modem.status()
            if s == hal.MODEM_ONLINE:
                self.state = _ONLINE
                self.sessions += 1
                self.failures = 0
                self.tried = 0
                self.cursor = (-1, -1)
                self.last_progress_ms = now_ms
                self.until_ms = now_ms + self._i("linger_s") * 1000
                return self._online(now_ms, pending)
            if s == hal.MODEM_FAILED or now_ms >= self.until_ms:
                self._backoff(now_ms)
                return self.until_ms
            return now_ms + 1000
        if st == _ONLINE:
            if self.modem.status() != hal.MODEM_ONLINE:  # coverage lost mid-session
                self._backoff(now_ms)
                return self.until_ms
            return self._online(now_ms, pending)
        return self.until_ms

    def _online(self, now_ms: int, pending: int) -> int:
        if pending == 0:
            if now_ms >= self.until_ms:  # linger for commands, then the modem sleeps
                self._power(False, now_ms)
                self.state = _IDLE
                return -1
            return self.until_ms
        self.until_ms = now_ms + self._i("linger_s") * 1000
        store = self.store
        window = self._i("send_window")
        # Frames sent and not yet acknowledged this session.
        inflight = 0
        p = store.first_pending()
        while p is not None and inflight < window:
            seq, n = p[1], p[2]
            i = store.index_of(n, seq)
            if (n, i) > self.cursor:
                break
            inflight += 1
            p = store.next_pending(n, i)
        while p is not None and inflight < window:
            seq, n = p[1], p[2]
            data = store.read(n, seq)
            if not self.modem.publish(self.up_topic, data):
                self._backoff(now_ms)
                return self.until_ms
            self.published += 1
            if self.ledger is not None:
                self.ledger.charge("modem", self.tx_uas)
            i = store.index_of(n, seq)
            self.cursor = (n, i)
            inflight += 1
            p = store.next_pending(n, i)
        wait_ms = self._i("ack_wait_s") * 1000
        if now_ms - self.last_progress_ms >= wait_ms:
            # Nothing acknowledged for a while: send the unacknowledged frames again (they are
            # byte-identical, so ingest de-duplicates), and give up the session after a few.
            self.resends += 1
            self.cursor = (-1, -1)
            self.last_progress_ms = now_ms
            if self.resends % 3 == 0:
                self._backoff(now_ms)
                return self.until_ms
        return min(now_ms + 1000, self.last_progress_ms + wait_ms)
