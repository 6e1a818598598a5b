"""Bearer tokens: short-lived JWT access tokens (HS256, pyjwt) naming a login session, and
opaque refresh tokens stored only as SHA-256 in `auth_sessions`, rotated on every use."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from backend.settings import Settings

ALGORITHM = "HS256"
ISSUER = "tagwatch"
JWT_LABEL = b"tagwatch jwt v1"


class TokenError(ValueError):
    pass


def signing_key(settings: Settings, server_key: bytes) -> bytes:
    """TAGWATCH_JWT_SECRET, TAGWATCH_JWT_SECRET_FILE, or derived from the server key."""
    if settings.jwt_secret:
        return settings.jwt_secret.encode()
    if settings.jwt_secret_file is not None:
        try:
            return settings.jwt_secret_file.read_bytes().strip()
        except OSError as e:
            raise TokenError(f"cannot read {settings.jwt_secret_file}: {e}") from e
    return hmac.new(server_key, JWT_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: int
    issued_at: int
    expires_at: int


class TokenSigner:
    def __init__(self, key: bytes, ttl_s: int) -> None:
        if len(key) < 32:
            raise TokenError("the token signing secret must be at least 32 bytes")
        self._key = key
        self.ttl_s = ttl_s

    def issue(self, user_id: int, session_id: int, now: float) -> str:
        iat = int(now)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": str(user_id),
            "sid": session_id,
            "iat": iat,
            "exp": iat + self.ttl_s,
            "typ": "access",
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def check(self, token: str, now: float) -> AccessClaims:
        """Signature, issuer, type and expiry (against the backend clock, not the host's)."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise TokenError(f"invalid token: {e}") from e
        if claims.get("typ") != "access":
            raise TokenError("not an access token")
        try:
            out = AccessClaims(
                int(claims["sub"]), int(claims["sid"]), int(claims["iat"]), int(claims["exp"])
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TokenError("malformed token claims") from e
        if now >= out.expires_at:
            raise TokenError("token expired")
        return out


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
