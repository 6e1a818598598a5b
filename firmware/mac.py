# HMAC-SHA256 (RFC 2104) for MicroPython, which has hashlib.sha256 but no hmac module.
# The same code runs on CPython; tests prove it equal to CPython's hmac.
# On CPython the C implementations are used for speed: both give identical results.
import hashlib

try:
    import hmac as _hmac
except ImportError:  # MicroPython
    _hmac = None  # type: ignore[assignment]

_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _pad(key: bytes, table: bytes) -> bytes:
    out = bytearray(_BLOCK)
    for i in range(len(key)):
        out[i] = table[key[i]]
    for i in range(len(key), _BLOCK):
        out[i] = table[0]
    return bytes(out)


def hmac_sha256_pure(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 from hashlib.sha256 alone (the firmware's implementation)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    inner = hashlib.sha256(_pad(key, _IPAD))
    inner.update(msg)
    outer = hashlib.sha256(_pad(key, _OPAD))
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    if _hmac is not None:
        return _hmac.digest(key, msg, "sha256")
    return hmac_sha256_pure(key, msg)


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison: the time taken does not depend on where a and b differ."""
    if _hmac is not None:
        return _hmac.compare_digest(a, b)
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def derive(key: bytes, label: bytes) -> bytes:
    """A sub-key for one purpose (e.g. the tag/home-unit pairing key), so keys are never reused."""
    return hmac_sha256(key, label)
