# Runs under CPython and MicroPython.
from firmware import mac
from tests.firmware.mpcompat import load_json

MICROPYTHON = True


def test_pure_hmac_matches_reference_vectors():
    # Expected MACs were computed by CPython's hmac module (RFC 4231 cases among them).
    for case in load_json("tests/vectors/hmac.json"):
        key = bytes.fromhex(case["key"])
        msg = bytes.fromhex(case["msg"])
        assert mac.hmac_sha256_pure(key, msg).hex() == case["mac"]
        assert mac.hmac_sha256(key, msg).hex() == case["mac"]


def test_equal_compares_whole_value():
    assert mac.equal(b"abcdef", b"abcdef")
    assert not mac.equal(b"abcdef", b"abcdeg")
    assert not mac.equal(b"abcdef", b"bbcdef")
    assert not mac.equal(b"abc", b"abcd")


def test_derive_separates_purposes():
    k = bytes(32)
    assert mac.derive(k, b"a") != mac.derive(k, b"b")
    assert len(mac.derive(k, b"a")) == 32
