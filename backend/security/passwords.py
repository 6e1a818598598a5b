"""argon2id password hashing (argon2-cffi), with the cost from settings."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from backend.settings import Settings

MIN_LENGTH = 12


class PasswordPolicyError(ValueError):
    pass


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._ph = PasswordHasher(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_kib,
            parallelism=1,
        )
        # Verified against when the username is unknown, so a miss costs what a hit costs
        # (no user enumeration by timing).
        self._dummy = self._ph.hash("tagwatch: no such user")

    def hash(self, password: str) -> str:
        check_policy(password)
        return self._ph.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._ph.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._ph.check_needs_rehash(stored)


def check_policy(password: str) -> None:
    """NCSC/NIST style: length matters, composition rules do not."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > 1024:
        raise PasswordPolicyError("a password may have at most 1024 characters")
