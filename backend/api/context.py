"""What one API process holds: settings, clock, database engine, password hasher, token
signer, login rate limiter and the notification dispatcher. `create_app` builds it; deps.py
hands parts of it out."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from backend.api.ratelimit import RateLimiter
from backend.clock import Clock
from backend.notify.dispatcher import Dispatcher
from backend.registry import KeyVault
from backend.security.passwords import Passwords
from backend.security.sessions import Sessions
from backend.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    clock: Clock
    engine: Engine
    vault: KeyVault
    passwords: Passwords
    sessions: Sessions
    login_limiter: RateLimiter
    dispatcher: Dispatcher
    # Pseudonyms of subjects in research exports (backend/services/research.py).
    research_key: bytes
