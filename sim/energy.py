"""Battery level from an energy ledger, so flat batteries happen when they would.

The ledger interface is deliberately small, so that the firmware's own energy ledger can
drive it in a full run: for each step, a mapping of component -> mAh consumed in that step
(e.g. {"gnss": 0.21, "modem": 0.03, "mcu": 0.013}), or a callable (t_ms, dt_ms) -> such a
mapping. `Battery` follows one tag; `fleet_levels` does the same for a whole fleet at once
(numpy over tags, one loop over time steps because the level saturates at empty and full).
Until the firmware ledger is wired in, `default_drain` estimates the draw from what the
person is doing (at home in RF mode, out and moving in GPS mode, out at rest), with the
component currents of sim.params.EnergyParams.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import NDArray

from sim.params import EnergyParams

Ledger = Mapping[str, float] | Callable[[int, int], Mapping[str, float]]

# Tag activity states for the default drain.
AT_HOME = 0  # RF mode: GNSS and modem off, BLE beacons
AWAY_MOVING = 1  # GPS mode, a fix a minute, batched uploads
AWAY_REST = 2  # GPS mode at rest: a fix an hour
DEAD = 3  # flat: draws nothing


class EnergyError(ValueError):
    pass


def ledger_mah(ledger: Ledger, t_ms: int, dt_ms: int) -> float:
    entries = ledger(t_ms, dt_ms) if callable(ledger) else ledger
    total = 0.0
    for component, mah in entries.items():
        if not (mah >= 0.0):  # also rejects NaN
            raise EnergyError(f"ledger entry {component!r} = {mah!r}: must be mAh >= 0")
        total += float(mah)
    return total


class Battery:
    """One tag's battery. Level in mAh, clamped to [0, capacity]."""

    def __init__(
        self, capacity_mah: float, level: float = 1.0, charge_ma: float | None = None
    ) -> None:
        if capacity_mah <= 0:
            raise EnergyError("capacity_mah must be positive")
        if not 0.0 <= level <= 1.0:
            raise EnergyError("level is a fraction of capacity, 0..1")
        self.capacity_mah = capacity_mah
        self.level_mah = capacity_mah * level
        self.charge_ma = EnergyParams().charge_ma if charge_ma is None else charge_ma
        self.flat_since_ms: int | None = None

    @property
    def level(self) -> float:
        return self.level_mah / self.capacity_mah

    @property
    def flat(self) -> bool:
        return self.level_mah <= 0.0

    def step(self, t_ms: int, dt_ms: int, ledger: Ledger, charging: bool = False) -> float:
        """Apply one step of consumption (and charging); returns the new level fraction.

        A flat tag consumes nothing (it is off), so its ledger is not charged for the step.
        """
        used = 0.0 if self.flat else ledger_mah(ledger, t_ms, dt_ms)
        gained = self.charge_ma * dt_ms / 3_600_000 if charging else 0.0
        self.level_mah = min(self.capacity_mah, max(0.0, self.level_mah - used + gained))
        if self.flat and self.flat_since_ms is None:
            self.flat_since_ms = t_ms + dt_ms
        elif not self.flat:
            self.flat_since_ms = None
        return self.level

    def hours_left(self, average_ma: float) -> float:
        return float("inf") if average_ma <= 0 else self.level_mah / average_ma


def default_ledger(state: int, dt_ms: int, p: EnergyParams | None = None) -> dict[str, float]:
    """The default model's ledger for one step in one state (component -> mAh)."""
    p = p or EnergyParams()
    h = dt_ms / 3_600_000
    if state == DEAD:
        return {}
    gnss = {AT_HOME: 0.0, AWAY_MOVING: p.gnss_duty_moving, AWAY_REST: p.gnss_duty_rest}[state]
    modem = p.modem_duty_home if state == AT_HOME else p.modem_duty_away
    return {
        "mcu": (p.mcu_sleep_ma + p.mcu_active_ma * p.mcu_active_duty) * h,
        "ble": p.ble_advertising_ma * h,
        "gnss": p.gnss_tracking_ma * gnss * h,
        "modem": (p.modem_tx_ma * modem + p.modem_sleep_ma * (1 - modem)) * h,
    }


def default_drain(
    state: NDArray[np.int8], dt_ms: int, p: EnergyParams | None = None
) -> NDArray[np.float64]:
    """Vectorized default_ledger total: mAh per step for an array of states."""
    p = p or EnergyParams()
    table = np.array(
        [sum(default_ledger(s, dt_ms, p).values()) for s in (AT_HOME, AWAY_MOVING, AWAY_REST, DEAD)]
    )
    return np.asarray(table[state], dtype=np.float64)


def fleet_levels(
    drain_mah: NDArray[np.float64],
    charging: NDArray[np.bool_],
    dt_ms: int,
    capacity_mah: float,
    initial: NDArray[np.float64],
    charge_ma: float,
) -> NDArray[np.float64]:
    """Battery fraction of every tag at every step boundary: shape (tags, steps + 1)."""
    if drain_mah.shape != charging.shape:
        raise EnergyError("drain and charging must have the same (tags, steps) shape")
    n, steps = drain_mah.shape
    gain = charge_ma * dt_ms / 3_600_000
    level = np.asarray(initial, np.float64) * capacity_mah
    out = np.empty((n, steps + 1))
    out[:, 0] = level
    for k in range(steps):
        used = np.where(level > 0, drain_mah[:, k], 0.0)
        level = np.clip(level - used + np.where(charging[:, k], gain, 0.0), 0.0, capacity_mah)
        out[:, k + 1] = level
    return np.asarray(out / capacity_mah, dtype=np.float64)
