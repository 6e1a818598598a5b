"""BLE link between a tag and its home unit: RSSI as the home unit sees it, and packet loss.

Log-distance path loss with log-normal shadowing (REF "RF proximity"):
RSSI(d) = RSSI(1 m) - 10 n log10(d) - wall losses + N(0, sigma). The exponent is the free-space
2 indoors-to-outdoors and ~3 within a house. A packet is heard when its RSSI clears the
receiver's sensitivity (a logistic edge a couple of dB wide) and survives a small base loss
from collisions. Leaving range therefore shows only as missing packets, as on real radios.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.params import RfParams

F64 = NDArray[np.float64]


def mean_rssi(
    distance_m: F64,
    interior_walls: NDArray[np.integer] | int = 0,
    exterior_walls: NDArray[np.integer] | int = 0,
    indoor: NDArray[np.bool_] | bool = False,
    p: RfParams | None = None,
) -> F64:
    """Median RSSI (dBm) without shadowing; distances under 1 m count as 1 m (near field)."""
    p = p or RfParams()
    d = np.maximum(np.asarray(distance_m, np.float64), 1.0)
    n = np.where(indoor, p.exponent_indoor, p.exponent_outdoor)
    walls = (
        np.asarray(interior_walls) * p.interior_wall_db
        + np.asarray(exterior_walls) * p.exterior_wall_db
    )
    return np.asarray(p.rssi_1m_dbm - 10.0 * n * np.log10(d) - walls, dtype=np.float64)


def receive(
    distance_m: F64,
    rng: np.random.Generator,
    interior_walls: NDArray[np.integer] | int = 0,
    exterior_walls: NDArray[np.integer] | int = 0,
    indoor: NDArray[np.bool_] | bool = False,
    p: RfParams | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """(heard, rssi_dbm) per packet. RSSI is reported as a whole dBm, as BLE stacks do; it
    is meaningless where heard is False."""
    p = p or RfParams()
    mean = mean_rssi(distance_m, interior_walls, exterior_walls, indoor, p)
    rssi = mean + rng.normal(0.0, p.shadowing_sigma_db, mean.shape)
    p_edge = 1.0 / (1.0 + np.exp(-(rssi - p.sensitivity_dbm) / (p.edge_width_db / 4.0)))
    heard = (rng.random(mean.shape) < p_edge) & (rng.random(mean.shape) >= p.base_loss)
    return heard, np.rint(rssi).astype(np.int64)


def walls_between(
    at_home: NDArray[np.bool_], home_walls: NDArray[np.integer]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Walls between a tag and its home unit: indoors at home, the home's interior walls;
    anywhere else, one exterior wall plus those interior walls (the unit is inside).
    Returns (interior, exterior, indoor-propagation)."""
    at_home = np.asarray(at_home, bool)
    interior = np.asarray(home_walls, np.int64) * np.ones(at_home.shape, np.int64)
    exterior = np.where(at_home, 0, 1).astype(np.int64)
    return interior, exterior, at_home


def range_m(walls_db: float = 0.0, indoor: bool = False, p: RfParams | None = None) -> float:
    """Distance at which the median RSSI meets the sensitivity."""
    p = p or RfParams()
    n = p.exponent_indoor if indoor else p.exponent_outdoor
    return float(10 ** ((p.rssi_1m_dbm - walls_db - p.sensitivity_dbm) / (10 * n)))
