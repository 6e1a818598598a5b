# SIMCom SIM7080G (LTE-M) driver: a non-blocking AT-command state machine over a UART that
# brings up the network and a TCP socket (AT+CAOPEN/CASEND/CARECV) to the broker, and runs the
# firmware's own MQTT client (firmware/mqtt.py) over it. Every call returns at once; step()
# advances the conversation. Written for the board's machine.UART and machine.Pin objects.
from firmware import board as hal
from firmware import mqtt

try:
    from typing import TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False  # type: ignore[misc]
if TYPE_CHECKING:
    from typing import Any

# Bring-up script: (command, reply that means success, timeout ms). CEREG is polled until
# registered; CAOPEN opens TCP connection 0 to the broker.
SETUP = (
    ("AT", "OK", 1000),
    ("ATE0", "OK", 1000),
    ("AT+CFUN=1", "OK", 10000),
    ("AT+CNMP=38", "OK", 2000),  # LTE only
    ("AT+CMNB=1", "OK", 2000),  # Cat-M
    ("AT+CPSMS=1", "OK", 2000),  # PSM between sessions: ~9 uA
)
REGISTER_TIMEOUT_MS = 90000


class Sim7080G:
    def __init__(self, uart: "Any", pwrkey: "Any", supply: "Any", cfg: "dict[str, object]") -> None:
        self.uart = uart
        self.pwrkey = pwrkey
        self.supply = supply
        self.host = ""  # the broker of the session asked for (connect())
        self.port = 0
        self.apn = str(cfg.get("board_apn", ""))
        self.state = hal.MODEM_OFF
        self.phase = "off"
        self.script: list[tuple[str, str, int]] = []
        self.waiting: "tuple[str, str, int] | None" = None
        self.deadline = 0
        self.started = 0
        self.now = 0
        self.rx = b""
        self.session: "mqtt.Session | None" = None
        self.recv_pending = False
        self.send_queue: list[bytes] = []
        self.sending: "bytes | None" = None
        self.last_tx = 0
        self.errors = 0
        self.last_error = ""
        self.client_id = ""
        self.password = ""
        self.down_topic = ""
        self.after = "ready"

    # -- the HAL interface ----------------------------------------------------------------
    def power(self, on: bool) -> None:
        if on and self.phase == "off":
            self.supply.value(1)
            self.pwrkey.value(1)  # PWRKEY low (through the transistor) for >1 s powers up
            self.phase = "pwrkey"
            self.deadline = self.now + 1200
            self.state = hal.MODEM_OFF
        elif not on and self.phase != "off":
            if self.session is not None:
                self._send_data(mqtt.disconnect())
            self._write("AT+CPOWD=1")  # orderly power down; the supply stays for PSM wake
            self.phase = "off"
            self.state = hal.MODEM_OFF
            self.session = None

    def connect(self, broker: str, client_id: str, password: str, down_topic: str) -> None:
        i = broker.rfind(":")
        self.host = broker[:i]
        self.port = int(broker[i + 1 :]) if i > 0 else 0
        self.client_id = client_id
        self.password = password
        self.down_topic = down_topic
        self.state = hal.MODEM_CONNECTING
        if not self.port:
            self._fail("no broker")
        elif self.phase == "ready":
            self._open()

    def status(self) -> int:
        return self.state

    def publish(self, topic: str, payload: bytes) -> bool:
        s = self.session
        if self.state != hal.MODEM_ONLINE or s is None:
            return False
        s.publish(topic, payload)
        self._flush_session()
        return True

    def receive(self) -> "tuple[str, bytes] | None":
        s = self.session
        if s is not None and s.inbox:
            return s.inbox.pop(0)
        return None

    def step(self, now_ms: int) -> int:
        self.now = now_ms
        if self.phase == "off":
            return -1
        self._read_lines()
        if self.phase == "pwrkey" and now_ms - self.deadline >= 0:
            self.pwrkey.value(0)
            self._start_script(list(SETUP) + self._apn_script(), "register")
        elif self.waiting is not None and now_ms - self.deadline >= 0:
            self._fail("timeout on " + self.waiting[0])
        elif self.phase == "register" and self.waiting is None:
            if now_ms - self.started >= REGISTER_TIMEOUT_MS:
                self._fail("not registered")
            else:
                self._command("AT+CEREG?", "+CEREG:", 2000)
        s = self.session
        online = s is not None and self.state == hal.MODEM_ONLINE
        if online and now_ms - self.last_tx >= s.keepalive_s * 500:  # type: ignore[union-attr]
            s.ping()  # type: ignore[union-attr]
            self._flush_session()
        return 200 if self.phase != "ready" or self.waiting is not None else 1000

    # -- AT conversation ------------------------------------------------------------------
    def _apn_script(self) -> "list[tuple[str, str, int]]":
        if not self.apn:
            return []
        return [('AT+CGDCONT=1,"IP","%s"' % self.apn, "OK", 2000)]

    def _write(self, cmd: str) -> None:
        self.uart.write(cmd.encode() + b"\r\n")

    def _command(self, cmd: str, expect: str, timeout: int) -> None:
        self.waiting = (cmd, expect, timeout)
        self.deadline = self.now + timeout
        self._write(cmd)

    def _start_script(self, script: "list[tuple[str, str, int]]", then: str) -> None:
        self.script = script
        self.after = then
        self.phase = "script"
        self.started = self.now
        self._next_in_script()

    def _next_in_script(self) -> None:
        if self.script:
            cmd, expect, timeout = self.script.pop(0)
            self._command(cmd, expect, timeout)
        else:
            self.waiting = None
            self.phase = self.after
            self.started = self.now

    def _fail(self, why: str) -> None:
        # The uplink sees MODEM_FAILED, powers the modem down and backs off.
        self.errors += 1
        self.last_error = why
        self.waiting = None
        self.session = None
        self.sending = None
        self.send_queue = []
        self.state = hal.MODEM_FAILED

    def _read_lines(self) -> None:
        n = self.uart.any()
        if not n:
            return
        self.rx += self.uart.read(n)
        while True:
            if self.sending is not None and self.rx.startswith(b">"):
                self.rx = self.rx[1:].lstrip(b" ")
                self.uart.write(self.sending)
                self.sending = None
                continue
            i = self.rx.find(b"\r\n")
            if i < 0:
                return
            line = self.rx[:i]
            if line.startswith(b"+CARECV:"):
                # +CARECV: <len>,<binary data> : the data may itself contain CR LF.
                comma = line.find(b",")
                if comma < 0:
                    self.rx = self.rx[i + 2 :]
                    continue
                ln = int(line[8:comma])
                start = comma + 1
                if len(self.rx) < start + ln:
                    return
                data = self.rx[start : start + ln]
                self.rx = self.rx[start + ln :]
                self._data(data)
                continue
            self.rx = self.rx[i + 2 :]
            if line:
                self._line(line.decode())

    def _line(self, line: str) -> None:
        if line.startswith("+CADATAIND:"):
            self.recv_pending = True
            self._flush_queue()
            return
        if line.startswith("+CASTATE: 0,0") or line.startswith("+APP PDP: 0,DEACTIVE"):
            self._fail("connection closed")
            return
        w = self.waiting
        if w is None:
            return
        cmd, expect, _t = w
        if line.startswith("ERROR") or line.startswith("+CME ERROR"):
            self._fail("%s: %s" % (cmd, line))
            return
        if cmd == "AT+CEREG?" and line.startswith("+CEREG:"):
            stat = line.split(",")[-1].strip()
            self.waiting = None
            if stat in ("1", "5"):  # registered: home or roaming
                self._start_script(
                    [("AT+CNACT=0,1", "OK", 30000), ("AT+CACID=0", "OK", 2000)], "ready"
                )
                if self.state == hal.MODEM_CONNECTING:
                    self.after = "open"
            return
        if cmd.startswith("AT+CAOPEN") and line.startswith("+CAOPEN:"):
            if line.endswith(",0"):
                self.waiting = None
                self.phase = "online"
                self.session = mqtt.Session(self.client_id, self.down_topic, 300, self.password)
                self._flush_session()
            else:
                self._fail(line)
            return
        if line.startswith(expect):
            if self.phase == "script":
                self._next_in_script()
                if self.phase == "open":
                    self._open()
            else:
                self.waiting = None
                self._flush_queue()

    def _open(self) -> None:
        self.phase = "open"
        self._command('AT+CAOPEN=0,0,"TCP","%s",%d' % (self.host, self.port), "+CAOPEN:", 30000)

    # -- data -----------------------------------------------------------------------------
    def _data(self, data: bytes) -> None:
        s = self.session
        if s is None:
            return
        try:
            s.received(data)
        except mqtt.ProtocolError:
            self._fail("mqtt")
            return
        if s.ready() and self.state == hal.MODEM_CONNECTING:
            self.state = hal.MODEM_ONLINE
        self._flush_session()

    def _flush_session(self) -> None:
        s = self.session
        if s is None:
            return
        out = s.take_out()
        if out:
            self._send_data(out)

    def _send_data(self, data: bytes) -> None:
        self.send_queue.append(data)
        self._flush_queue()

    def _flush_queue(self) -> None:
        if self.waiting is not None:
            return
        if self.recv_pending:
            self.recv_pending = False
            self._command("AT+CARECV=0,1460", "OK", 3000)
            return
        if not self.send_queue:
            return
        data = self.send_queue.pop(0)
        self.sending = data
        self.last_tx = self.now
        self._command("AT+CASEND=0,%d" % len(data), "OK", 5000)
