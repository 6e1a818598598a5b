# A minimal MQTT 3.1.1 client codec for the tag's own TCP socket through the cellular modem
# (no umqtt off-device, and the modem's MQTT AT commands cannot carry binary payloads
# safely). Pure: packets in, packets out; the modem driver moves the bytes. QoS 1 publish and
# subscribe, PUBACK for received QoS 1 messages, keep-alive pings, persistent session.
import struct

from firmware.runtime import const

CONNECT = 0x10
CONNACK = 0x20
_PUBLISH = const(0x30)
PUBACK = 0x40
_SUBSCRIBE = const(0x82)
SUBACK = 0x90
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
DISCONNECT = 0xE0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: "str | bytes") -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def packet(kind: int, body: bytes) -> bytes:
    return bytes((kind,)) + _varint(len(body)) + body


def connect(client_id: str, keepalive_s: int, clean: bool = False, password: str = "") -> bytes:
    """CONNECT (MQTT 3.1.1). With a password the username is the client id: a device logs in
    as `tag-<id>` with the password derived from its key (firmware.brokers.password), and
    the broker's device listener binds the client id to that username anyway."""
    flags = 0x02 if clean else 0x00
    body = _str(client_id)
    if password:
        flags |= 0xC0  # username and password present
        body += _str(client_id) + _str(password)
    return packet(CONNECT, _str("MQTT") + bytes((4, flags)) + struct.pack(">H", keepalive_s) + body)


def publish(topic: str, payload: bytes, pid: int) -> bytes:
    return packet(_PUBLISH | 0x02, _str(topic) + struct.pack(">H", pid) + payload)  # QoS 1


def subscribe(topic: str, pid: int) -> bytes:
    return packet(_SUBSCRIBE, struct.pack(">H", pid) + _str(topic) + b"\x01")


def puback(pid: int) -> bytes:
    return packet(PUBACK, struct.pack(">H", pid))


def pingreq() -> bytes:
    return b"\xc0\x00"


def disconnect() -> bytes:
    return b"\xe0\x00"


class ProtocolError(ValueError):
    pass


class Decoder:
    """Splits a byte stream into packets, whatever the chunking: feed(), then next()."""

    MAX = 8192  # larger than any frame the backend sends a tag

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> "tuple[int, bytes] | None":
        b = self.buf
        if len(b) < 2:
            return None
        n = 0
        shift = 0
        i = 1
        while True:
            if i >= len(b):
                return None
            c = b[i]
            n |= (c & 0x7F) << shift
            i += 1
            if not c & 0x80:
                break
            shift += 7
            if shift > 21:
                raise ProtocolError("bad remaining length")
        if n > self.MAX:
            raise ProtocolError("packet of %d bytes" % n)
        if len(b) < i + n:
            return None
        self.buf = b[i + n :]
        return b[0], b[i : i + n]


def parse_publish(flags: int, body: bytes) -> "tuple[str, bytes, int]":
    """(topic, payload, packet id or 0 for QoS 0)."""
    tlen = struct.unpack_from(">H", body, 0)[0]
    topic = body[2 : 2 + tlen].decode()
    i = 2 + tlen
    pid = 0
    if (flags >> 1) & 3:
        pid = struct.unpack_from(">H", body, i)[0]
        i += 2
    return topic, body[i:], pid


class Session:
    """Client state over one TCP connection: what to send, what came in."""

    def __init__(
        self, client_id: str, down_topic: str, keepalive_s: int = 300, password: str = ""
    ) -> None:
        self.client_id = client_id
        self.down_topic = down_topic
        self.keepalive_s = keepalive_s
        self.dec = Decoder()
        self.out: list[bytes] = [connect(client_id, keepalive_s, False, password)]
        self.connected = False
        self.subscribed = False
        self.refused = 0
        self.pid = 0
        self.unacked: dict[int, bytes] = {}
        self.inbox: list[tuple[str, bytes]] = []

    def _next_pid(self) -> int:
        self.pid = self.pid % 0xFFFF + 1
        return self.pid

    def ready(self) -> bool:
        return self.connected and self.subscribed

    def publish(self, topic: str, payload: bytes) -> None:
        pid = self._next_pid()
        pkt = publish(topic, payload, pid)
        self.unacked[pid] = pkt
        self.out.append(pkt)

    def ping(self) -> None:
        self.out.append(pingreq())

    def take_out(self) -> bytes:
        data = b"".join(self.out)
        self.out = []
        return data

    def received(self, data: bytes) -> None:
        self.dec.feed(data)
        while True:
            p = self.dec.next()
            if p is None:
                return
            head, body = p
            kind = head & 0xF0
            if kind == CONNACK:
                if len(body) < 2 or body[1] != 0:
                    self.refused += 1
                    raise ProtocolError("connection refused %d" % (body[1] if body else -1))
                self.connected = True
                self.out.append(subscribe(self.down_topic, self._next_pid()))
            elif kind == SUBACK:
                self.subscribed = True
            elif kind == PUBACK:
                self.unacked.pop(struct.unpack(">H", body[:2])[0], None)
            elif kind == _PUBLISH:
                topic, payload, pid = parse_publish(head & 0x0F, body)
                if pid:
                    self.out.append(puback(pid))
                self.inbox.append((topic, payload))
