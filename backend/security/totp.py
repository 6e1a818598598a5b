"""TOTP (RFC 6238 over RFC 4226 HOTP): SHA-1, 6 digits, 30-second steps, as every
authenticator app implements. The secret is sealed at rest with the server key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

STEP_S = 30
DIGITS = 6
# Accept the previous and next step too: phone clocks drift and people type slowly.
WINDOW = 1


def new_secret() -> bytes:
    return secrets.token_bytes(20)  # 160 bits, RFC 4226's recommendation


def b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp(secret: bytes, now: float, digits: int = DIGITS) -> str:
    return hotp(secret, int(now // STEP_S), digits)


def match(secret: bytes, code: str, now: float, after_step: int | None = None) -> int | None:
    """The time step `code` is valid for (within the window), or None. A step at or before
    `after_step` (the last one used) is refused, so a code cannot be replayed."""
    code = code.strip().replace(" ", "")
    # ASCII digits only: str.isdigit() also takes other scripts' digits, which
    # hmac.compare_digest refuses with a TypeError (a 500 at sign-in).
    if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return None
    now_step = int(now // STEP_S)
    for step in range(now_step - WINDOW, now_step + WINDOW + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


def uri(secret: bytes, account: str, issuer: str) -> str:
    """otpauth:// provisioning URI (shown as a QR code by the web UI)."""
    label = quote(f"{issuer}:{account}")
    query = urlencode({"secret": b32(secret), "issuer": issuer, "algorithm": "SHA1"})
    return f"otpauth://totp/{label}?{query}&digits={DIGITS}&period={STEP_S}"
