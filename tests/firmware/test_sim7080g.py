# The SIM7080G driver against a scripted modem on a fake UART: power-up, registration, TCP
# open, MQTT over CASEND/CARECV (binary data with CR LF inside), loss of the connection.
from firmware import board as hal
from firmware import mqtt
from firmware.boards.sim7080g import Sim7080G

MICROPYTHON = True


class Pin:
    def __init__(self):
        self.v = 0

    def value(self, v=None):
        if v is not None:
            self.v = v
        return self.v


class ScriptedModem:
    """Answers AT commands as a SIM7080G does; `registered_after` CEREG polls say 0,2 first."""

    def __init__(self, registered_after=2):
        self.inbuf = b""
        self.out = b""
        self.polls = 0
        self.registered_after = registered_after
        self.casend = -1
        self.tcp = b""  # what the driver sent over TCP
        self.downstream = b""  # what the "broker" will send
        self.commands = []

    def any(self):
        return len(self.out)

    def read(self, n=-1):
        if n < 0:
            n = len(self.out)
        d, self.out = self.out[:n], self.out[n:]
        return d

    def write(self, data):
        if self.casend >= 0:
            self.tcp += data[: self.casend]
            self.casend = -1
            self.out += b"\r\nOK\r\n"
            return
        self.inbuf += data
        while b"\r\n" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\r\n", 1)
            self._cmd(line.decode())

    def _cmd(self, c):
        self.commands.append(c)
        if c == "AT+CEREG?":
            self.polls += 1
            stat = 1 if self.polls > self.registered_after else 2
            self.out += b"\r\n+CEREG: 0,%d\r\n\r\nOK\r\n" % stat
        elif c.startswith("AT+CAOPEN"):
            self.out += b"\r\n+CAOPEN: 0,0\r\n\r\nOK\r\n"
        elif c.startswith("AT+CASEND=0,"):
            self.casend = int(c.split(",")[1])
            self.out += b"\r\n> "
        elif c.startswith("AT+CARECV"):
            d, self.downstream = self.downstream, b""
            self.out += b"\r\n+CARECV: %d," % len(d) + d + b"\r\n\r\nOK\r\n"
        else:
            self.out += b"\r\nOK\r\n"

    def broker_sends(self, data):
        self.downstream += data
        self.out += b"\r\n+CADATAIND: 0\r\n"


def drive(m, uart, t, until_ms, cond=None):
    while t < until_ms:
        m.step(t)
        if cond is not None and cond():
            return t
        t += 100
    return t


def test_bring_up_publish_receive_and_loss():
    uart = ScriptedModem()
    supply, key = Pin(), Pin()
    m = Sim7080G(uart, key, supply, {"board_apn": "iot"})
    m.power(True)
    assert supply.v == 1 and key.v == 1
    m.connect("broker.test:8883", "tag-9", "pw-9", "tw/v1/tag/9/down")
    t = drive(m, uart, 0, 5000, lambda: "AT+CNMP=38" in uart.commands)
    assert key.v == 0  # PWRKEY released after the pulse
    assert m.status() == hal.MODEM_CONNECTING
    t = drive(m, uart, t, 30000, lambda: uart.tcp.startswith(b"\x10"))
    assert 'AT+CAOPEN=0,0,"TCP","broker.test",8883' in uart.commands
    assert uart.tcp == mqtt.connect("tag-9", 300, False, "pw-9")  # logs in with its password
    assert 'AT+CGDCONT=1,"IP","iot"' in uart.commands
    assert uart.polls == 3  # polled registration until it came
    uart.tcp = b""
    uart.broker_sends(b"\x20\x02\x00\x00")  # CONNACK
    t = drive(m, uart, t, 40000, lambda: uart.tcp.startswith(b"\x82"))
    uart.tcp = b""
    uart.broker_sends(b"\x90\x03\x00\x01\x01")  # SUBACK
    t = drive(m, uart, t, 50000, lambda: m.status() == hal.MODEM_ONLINE)
    assert m.status() == hal.MODEM_ONLINE
    payload = b"\x01\r\n\x02frame with CR LF inside\r\n"
    assert m.publish("tw/v1/tag/9/up", payload)
    t = drive(m, uart, t, 60000, lambda: payload in uart.tcp)
    assert uart.tcp == mqtt.publish("tw/v1/tag/9/up", payload, 2)
    uart.tcp = b""
    ack = b"\x03\r\nack bytes\r\n"
    uart.broker_sends(mqtt.publish("tw/v1/tag/9/down", ack, 77))
    t = drive(m, uart, t, 70000, lambda: uart.tcp == mqtt.puback(77))
    assert m.receive() == ("tw/v1/tag/9/down", ack)
    uart.out += b"\r\n+CASTATE: 0,0\r\n"  # the network dropped the connection
    drive(m, uart, t, 80000, lambda: m.status() == hal.MODEM_FAILED)
    assert m.status() == hal.MODEM_FAILED and not m.publish("x", b"y")
    m.power(False)
    assert "AT+CPOWD=1" in uart.commands[-1]


def test_registration_timeout_fails():
    uart = ScriptedModem(registered_after=10**6)
    m = Sim7080G(uart, Pin(), Pin(), {})
    m.power(True)
    m.connect("broker.test:1883", "tag-9", "pw", "d")
    drive(m, uart, 0, 200000, lambda: m.status() == hal.MODEM_FAILED)
    assert m.status() == hal.MODEM_FAILED and m.last_error == "not registered"
