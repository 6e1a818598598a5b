"""Buffer overflow — data lost (version 1).

A tag whose flash buffer filled, or a home unit whose relay queue refused frames, reports an
overflow record with the number of records lost. Each is an instant episode (the data is
gone; there is nothing to wait for), with the count in its details.

Parameters: `min_lost` 1 — smallest loss that alerts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.rules.base import Context, Rule, instant
from backend.rules.model import Obs


@dataclass(frozen=True)
class OverflowParams:
    min_lost: int = 1


class Overflow(Rule):
    name = "overflow"
    version = 1
    Params = OverflowParams

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.name == "overflow" and obs.v("lost") >= self.p.min_lost:
            instant(
                self,
                ctx,
                "buffer_overflow",
                f"{obs.device}/{obs.ref}",
                obs,
                {"lost": obs.v("lost"), "role": obs.role},
                severity="medium",
            )
