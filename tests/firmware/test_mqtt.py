# The firmware's minimal MQTT client codec: golden packets and stream splitting.
from firmware import mqtt
from tests.firmware.mpcompat import raises

MICROPYTHON = True


def test_connect_packet_bytes():
    assert mqtt.connect("tag-7", 300) == (b"\x10\x11\x00\x04MQTT\x04\x00\x01\x2c\x00\x05tag-7")


def test_connect_with_credentials_bytes():
    # Flags 0xC0: username and password follow the client id; the username is the client id.
    assert mqtt.connect("tag-7", 300, False, "pw") == (
        b"\x10\x1c\x00\x04MQTT\x04\xc0\x01\x2c\x00\x05tag-7\x00\x05tag-7\x00\x02pw"
    )


def test_publish_subscribe_puback_bytes():
    assert mqtt.publish("a/b", b"\x01\x02", 5) == b"\x32\x09\x00\x03a/b\x00\x05\x01\x02"
    assert mqtt.subscribe("t/d", 1) == b"\x82\x08\x00\x01\x00\x03t/d\x01"
    assert mqtt.puback(258) == b"\x40\x02\x01\x02"


def test_long_remaining_length():
    p = mqtt.publish("t", bytes(300), 1)
    assert p[1:3] == bytes((0xB1, 0x02))  # 305 as a varint
    d = mqtt.Decoder()
    d.feed(p)
    kind, body = d.next()
    assert kind == 0x32 and mqtt.parse_publish(2, body) == ("t", bytes(300), 1)


def test_session_flow_byte_by_byte():
    s = mqtt.Session("tag-1", "tw/v1/tag/1/down")
    assert s.take_out().startswith(b"\x10")
    stream = b"\x20\x02\x00\x00" + b"\x90\x03\x00\x01\x01"
    stream += mqtt.publish("tw/v1/tag/1/down", b"ack!", 9)
    for i in range(len(stream)):
        s.received(stream[i : i + 1])
    assert s.ready() and s.inbox == [("tw/v1/tag/1/down", b"ack!")]
    out = s.take_out()
    assert out == mqtt.subscribe("tw/v1/tag/1/down", 1) + mqtt.puback(9)
    s.publish("up", b"x")
    assert list(s.unacked) == [2]
    s.received(mqtt.puback(2))
    assert s.unacked == {}


def test_refused_and_bad_lengths():
    s = mqtt.Session("tag-1", "d")
    raises(mqtt.ProtocolError, s.received, b"\x20\x02\x00\x05")
    d = mqtt.Decoder()
    d.feed(b"\x30\xff\xff\xff\xff\x01")
    raises(mqtt.ProtocolError, d.next)
