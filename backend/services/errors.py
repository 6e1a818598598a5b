"""What a service raises when it refuses: a sentence for the caller, never internals. The
API answers each kind with its status (backend/api/app.py): Invalid 422, Conflict 409,
NotFound 404. The shell prints it."""

from __future__ import annotations


class Refused(ValueError):
    """A request the domain refuses; `str(e)` says why in a sentence."""


class Invalid(Refused):
    """A value the schema could not judge is wrong (an unknown unit, an implausible date,
    an end before its start)."""


class Conflict(Refused):
    """It conflicts with what is stored: a duplicate, a state, a per-subject count."""


class NotFound(Refused):
    """No such record (where the guard could not already say so)."""
