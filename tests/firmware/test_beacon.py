# Runs under CPython and MicroPython.
from firmware import beacon as bc
from firmware.frame import DecodeError
from tests.firmware.mpcompat import load_json, raises

MICROPYTHON = True


def test_beacon_vectors():
    for v in load_json("tests/vectors/beacons.json"):
        bkey = bc.beacon_key(bytes.fromhex(v["tag_key"]))
        d = v["beacon"]
        b = bc.Beacon(d["tag"], d["counter"], d["status"], d["battery"], d["pending"])
        payload = bc.encode_beacon(b, bkey)
        assert payload.hex() == v["payload"]
        assert bc.decode_beacon(payload, bkey) == b
        adv = bc.advertisement(payload, b"TW")
        assert adv.hex() == v["advertisement"]
        assert len(adv) <= 31
        assert bc.manufacturer_payload(adv) == payload


def test_beacon_rejects_flips_and_foreign_keys():
    v = load_json("tests/vectors/beacons.json")[0]
    bkey = bc.beacon_key(bytes.fromhex(v["tag_key"]))
    payload = bytes.fromhex(v["payload"])
    for i in range(len(payload)):
        bad = bytearray(payload)
        bad[i] ^= 0x01
        e = raises(DecodeError, bc.decode_beacon, bytes(bad), bkey)
        assert e.reason in ("mac", "version")
    assert raises(DecodeError, bc.decode_beacon, payload, bc.beacon_key(b"x")).reason == "mac"
    assert raises(DecodeError, bc.decode_beacon, payload[:-1], bkey).reason == "length"


def test_home_ack_vectors():
    for v in load_json("tests/vectors/home_acks.json"):
        d = v["ack"]
        pkey = bc.pairing_key(bytes.fromhex(v["home_key"]), d["tag"])
        assert pkey.hex() == v["pairing_key"]
        a = bc.HomeAck(d["home_unit"], d["tag"], d["unix"], d["lease"], d["echo"], d["flags"])
        assert bc.encode_home_ack(a, pkey).hex() == v["hex"]
        assert bc.decode_home_ack(bytes.fromhex(v["hex"]), pkey) == a


def test_home_ack_for_another_tag_fails():
    v0, v1 = load_json("tests/vectors/home_acks.json")[:2]
    # An ack signed for tag 1002 does not verify with tag 1001's pairing key.
    e = raises(
        DecodeError, bc.decode_home_ack, bytes.fromhex(v1["hex"]), bytes.fromhex(v0["pairing_key"])
    )
    assert e.reason == "mac"


def test_manufacturer_payload_ignores_other_data():
    assert bc.manufacturer_payload(bytes((2, 1, 6, 3, 0xFF, 0x4C, 0x00))) is None
    assert bc.manufacturer_payload(bytes((9, 0xFF))) is None
    assert bc.manufacturer_payload(b"") is None
