# Runs under CPython and MicroPython: the golden vectors in tests/vectors/ for both codecs.
from firmware import frame as fr
from firmware.framedict import frame_from_dict
from tests.firmware.mpcompat import load_json, raises

MICROPYTHON = True


def test_vectors_encode_to_golden_bytes():
    for v in load_json("tests/vectors/frames.json"):
        f = frame_from_dict(v["frame"])
        assert fr.encode(f, bytes.fromhex(v["key"])).hex() == v["hex"], v["name"]


def test_vectors_decode_to_their_meaning():
    for v in load_json("tests/vectors/frames.json"):
        f = fr.decode(bytes.fromhex(v["hex"]), bytes.fromhex(v["key"]))
        assert f.to_dict() == v["frame"], v["name"]


def test_invalid_vectors_fail_with_their_reason():
    for v in load_json("tests/vectors/invalid.json"):
        data = bytes.fromhex(v["hex"])
        if "key" in v:
            e = raises(fr.DecodeError, fr.decode, data, bytes.fromhex(v["key"]))
        else:
            e = raises(fr.DecodeError, fr.parse, data)
        assert e.reason == v["reason"], (v["name"], e.reason)


def test_unknown_record_is_skipped_and_kept():
    v = next(x for x in load_json("tests/vectors/frames.json") if x["name"] == "forward_compatible")
    f = fr.parse(bytes.fromhex(v["hex"]))
    assert f.records[0].name is None
    assert f.records[0].raw == bytes.fromhex("00112233")
    fix = f.records[1]
    assert fix.type == fr.FIX and fix.lat_e7 == -338688000 and fix.extra == b"\xbe\xef"


def test_wrong_key_fails_mac():
    v = load_json("tests/vectors/frames.json")[0]
    e = raises(fr.DecodeError, fr.decode, bytes.fromhex(v["hex"]), bytes(32))
    assert e.reason == "mac"


def test_out_of_range_values_are_refused_not_truncated():
    # MicroPython's struct would silently wrap 300 into a byte; the codec must refuse it.
    raises(ValueError, fr.Record, fr.TAMPER, dt=0, sensor=300, state=0)
    raises(ValueError, fr.Record, fr.OVERFLOW, dt=-1, lost=0)
    raises(ValueError, fr.Record, fr.OVERFLOW, dt=0, lost=2**32)
    raises(ValueError, fr.Record, fr.CMD_TIME_SYNC, unix=1.5)
    raises(ValueError, fr.Record, fr.TAMPER, dt=0, sensor=1)
    raises(ValueError, fr.Record, fr.TAMPER, dt=0, sensor=1, state=0, colour=2)
    f = fr.Frame(fr.TAG_DATA, 2**32, 0, 0, 0)
    raises(ValueError, fr.encode, f, b"k")
    raises(ValueError, fr.encode, fr.Frame(fr.TAG_DATA, 1, 0, 0, 0, mac_len=7), b"k")


def test_record_times_are_relative_to_the_frame():
    f = fr.Frame(fr.TAG_DATA, 1, 0, 0, 1000, [fr.Record(fr.OVERFLOW, dt=40, lost=1)])
    assert f.time_of(f.records[0]) == 960


def test_ten_fix_frame_fits_the_budget():
    v = next(x for x in load_json("tests/vectors/frames.json") if x["name"] == "ten_fixes")
    size = len(v["hex"]) // 2
    # docs/protocol.md: 20-byte header, 22 bytes a fix, 12-byte MAC.
    assert size == fr.HEADER_LEN + 10 * 22 + fr.MAC_DEFAULT == 252


def test_peek_device_reads_header_only():
    v = load_json("tests/vectors/frames.json")[0]
    assert fr.peek_device(bytes.fromhex(v["hex"])) == v["frame"]["device"]
    assert fr.peek_device(b"\x01\x01") is None


def test_fix_in_range_is_the_globe_inclusive():
    # The one bound on a fix's position; the receivers' fast path (fixframe.py) uses it too.
    assert fr.fix_in_range((0, 900000000, -1800000000))
    assert fr.fix_in_range((0, -900000000, 1800000000))
    assert not fr.fix_in_range((0, 900000001, 0))
    assert not fr.fix_in_range((0, -900000001, 0))
    assert not fr.fix_in_range((0, 0, 1800000001))
    assert not fr.fix_in_range((0, 0, -1800000001))
