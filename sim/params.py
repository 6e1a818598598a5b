"""Every simulator model parameter, in one place, with where each number comes from.

"REF" means /work/shared/REFERENCES.md (the project's gathered facts); "assumption" marks a
number chosen by us where no source gives one, with the reasoning. Models take these objects
as arguments (defaults below), so a scenario or a test can vary one number without editing
code. docs/simulator.md describes the models that use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Environment codes: what surrounds a point, as the GNSS and RF models see it. Stored as
# small ints so that a fleet's environments are one numpy array.
OPEN_SKY = 0
NEAR_BUILDINGS = 1
URBAN_CANYON = 2
INDOORS = 3
SHIELDED = 4  # tag wrapped in foil: no satellite reaches the antenna
ENVIRONMENTS = ("open_sky", "near_buildings", "urban_canyon", "indoors", "shielded")
# REF: UK location tags must be charged at least an hour a day. The truth's not_charged days
# and the subjects' charging schedule in the backend (sim/monitoring.py) both use it.
CHARGE_MIN_MINUTES = 60


@dataclass(frozen=True)
class GnssEnvironment:
    """Error and signal model of one environment.

    The core horizontal error is circular Gaussian (per-axis sigma), so its radius is Rayleigh:
    CEP = 1.1774 sigma, R95 = 2.4477 sigma, 2DRMS = 2.8284 sigma = 2.40 x CEP (REF: "2DRMS ~
    2.4 x CEP"). With probability `outlier_p` a fix is instead a multipath/reflection outlier
    at a radius uniform in `outlier_m`.
    """

    sigma_m: float  # per-axis sigma of the core error
    outlier_p: float
    outlier_m: tuple[float, float]
    availability: float  # probability that a fix is produced at all once acquired
    hdop_median: float  # HDOP at the median core error
    ttff_factor: float  # time-to-first-fix multiplier against open sky
    correlation_s: float  # Gauss-Markov correlation time of the core error (assumption)


@dataclass(frozen=True)
class GnssParams:
    environments: tuple[GnssEnvironment, ...] = (
        # REF "Open sky: ~5 m typical (<= 8 m 95 %)": sigma 3.27 m gives R95 = 8.0 m,
        # RMS radius 4.6 m, CEP 3.85 m. No outliers, always a fix.
        GnssEnvironment(3.27, 0.0, (0.0, 0.0), 1.0, 0.8, 1.0, 60.0),
        # REF "Near buildings and trees: ~10 m mean with outliers near 100 m": core mean
        # 8 m (sigma 6.4) with 3 % outliers at 40-120 m gives a mean of ~10.2 m.
        GnssEnvironment(6.4, 0.03, (40.0, 120.0), 0.98, 1.3, 1.3, 45.0),
        # REF "Urban canyon: multipath errors beyond 50 m": core mean 15 m, 15 % outliers at
        # 50-150 m; 10 % of epochs without a fix (assumption: blocked sky).
        GnssEnvironment(12.0, 0.15, (50.0, 150.0), 0.90, 2.5, 2.0, 30.0),
        # REF "Indoors: often no fix, else tens of metres": 30 % availability (assumption
        # for "often no fix"), core mean 30 m, 10 % outliers at 60-200 m.
        GnssEnvironment(24.0, 0.10, (60.0, 200.0), 0.30, 4.0, 4.0, 30.0),
        # Foil shielding: nothing reaches the antenna.
        GnssEnvironment(0.0, 0.0, (0.0, 0.0), 0.0, 99.9, 1.0, 1.0),
    )
    # u-blox M10 (REF): cold start ~23 s, hot start ~1 s. Warm start (almanac and time
    # known, ephemeris expired) is not in REF: u-blox M8/M10 data sheets put it between;
    # assumption 18 s.
    ttff_cold_s: float = 23.0
    ttff_warm_s: float = 18.0
    ttff_hot_s: float = 1.0
    ttff_spread: float = 0.25  # lognormal sigma of TTFF around the median (assumption)
    # NIJ 1004.00 (REF): a cold-start fix within 2 minutes under open sky. Past this the
    # receiver reports no fix for the attempt.
    ttff_timeout_s: float = 120.0
    # Ephemeris is valid ~4 h; we call a start "hot" within 2 h of the last fix and "warm"
    # within 7 days (almanac age) unless backup power was lost (assumption from u-blox docs).
    hot_within_s: float = 2 * 3600.0
    warm_within_s: float = 7 * 86400.0
    # HDOP spread around the environment's median, lognormal sigma (assumption).
    hdop_spread: float = 0.15
    # Satellites used from HDOP: n = 3 + (hdop_k / HDOP)^2, an inverse-square-root law that
    # gives ~20 satellites at HDOP 0.6 and 4 at HDOP 2.5 (assumption, typical of
    # multi-constellation receivers).
    hdop_k: float = 2.5
    sats_max: int = 32
    # Altitude above mean sea level around Bournemouth (assumption, ~20-60 m).
    altitude_m: float = 35.0
    geoid_sep_m: float = 48.0  # WGS84 geoid separation in southern England

    def replacing(self, env: int, model: GnssEnvironment) -> GnssParams:
        """These parameters with environment `env` modelled by `model` instead."""
        envs = list(self.environments)
        envs[env] = model
        return replace(self, environments=tuple(envs))


# Multipath that holds: standing by a building face the same reflection dominates for a
# minute or more, so the error is large and slow to change (per-axis sigma 25 m, REF
# "Urban canyon: multipath errors beyond 50 m", correlated over 60 s, no separate outliers),
# while the HDOP, which sees only the satellites' geometry, reads as in the urban canyon:
# the accuracy the receiver reports (~12.5 m) is about 2.4 times smaller than its median
# error (29 m). Not part of the world (town-centre streets are URBAN_CANYON); rule studies
# use it, with GnssParams().replacing(URBAN_CANYON, CORRELATED_MULTIPATH), as the worst case
# of an error the receiver does not admit (assumption: a street where one reflection
# dominates for a minute at a time).
CORRELATED_MULTIPATH = GnssEnvironment(25.0, 0.0, (0.0, 0.0), 0.90, 2.5, 2.0, 60.0)


@dataclass(frozen=True)
class RfParams:
    """BLE tag -> home unit link. REF "RF proximity": log-distance path loss with shadowing."""

    rssi_1m_dbm: float = -59.0  # typical BLE measured power at 1 m, 0 dBm TX (assumption)
    exponent_outdoor: float = 2.0  # REF n ~ 2 in free space
    exponent_indoor: float = 3.0  # REF n 2-4 indoors; mid value
    shadowing_sigma_db: float = 3.0  # REF sigma 2-4 dB
    interior_wall_db: float = 4.0  # assumption: plasterboard/brick partition 3-6 dB
    exterior_wall_db: float = 8.0  # assumption: UK cavity brick wall 6-10 dB
    sensitivity_dbm: float = -96.0  # home unit receiver floor (assumption: BLE -95..-97 dBm)
    # Below sensitivity a packet is lost; near it loss rises smoothly (logistic, dB width).
    edge_width_db: float = 2.0
    base_loss: float = 0.02  # collisions and interference on a free channel (assumption)
    # With these numbers the range through one exterior wall is ~25-30 m, REF "bracelet RF
    # range ~23-30 m (75-100 ft)".


@dataclass(frozen=True)
class CellularParams:
    # LTE-M latency of one uplink once attached: lognormal, median 400 ms, sigma 0.6 (p95
    # ~1.1 s) (assumption, typical published LTE-M round trips 300 ms - 2 s).
    latency_median_ms: float = 400.0
    latency_sigma: float = 0.6
    # Random short outages anywhere (assumption: a few minutes per tag per week).
    outage_rate_per_day: float = 0.2
    outage_minutes: tuple[float, float] = (2.0, 20.0)


@dataclass(frozen=True)
class EnergyParams:
    """Default tag energy model, used for the ground truth of flat batteries until the full run
    feeds the firmware's own ledger (sim.energy.Battery accepts either)."""

    # Battery capacity (assumption: a one-piece ankle tag's Li-ion cell). With the default
    # draw below a typical day (6 h moving, 4 h out at rest, 14 h home) costs ~75 mAh, so a
    # full battery lasts about 9 days without charging - this design is low-power;
    # commercial one-piece tags run 24-72 h a charge (REF). The firmware's own ledger
    # replaces the default draw in a full run (sim.energy.Battery takes any ledger).
    capacity_mah: float = 700.0
    charge_ma: float = 350.0  # 0.5 C charge (assumption): ~2 h from flat
    # Average currents by component and state (REF hardware numbers; duty cycles ours).
    mcu_sleep_ma: float = 0.8  # ESP32 light sleep (REF)
    # ESP32-S3 awake ~40 mA for ~2 % of the time (polls, BLE events): assumption.
    mcu_active_ma: float = 40.0
    mcu_active_duty: float = 0.02
    ble_advertising_ma: float = 0.0035  # nRF52 advertising once a second adds ~3.5 uA (REF)
    gnss_tracking_ma: float = 12.7  # u-blox M10 tracking (REF)
    modem_tx_ma: float = 167.0  # LTE-M at 23 dBm (REF)
    modem_sleep_ma: float = 0.009  # PSM (REF)
    # Duty cycles in GPS mode (moving): GNSS on ~25 % with one fix a minute (hot starts),
    # modem transmitting ~1 % (batch uploads) - assumptions.
    gnss_duty_moving: float = 0.25
    gnss_duty_rest: float = 0.01  # one fix an hour at rest (REF 3M behaviour)
    modem_duty_away: float = 0.01
    modem_duty_home: float = 0.0  # RF mode: modem off, home unit relays


@dataclass(frozen=True)
class MovementParams:
    walk_speed_mps: tuple[float, float] = (1.1, 1.5)  # adult walking speeds (assumption)
    bus_speed_mps: float = 6.0  # ~22 km/h urban bus including stops (assumption)
    bus_wait_s: tuple[float, float] = (60.0, 720.0)  # waiting at the stop
    bus_over_m: float = 1500.0  # trips longer than this go by bus
    evening_charge_min: tuple[float, float] = (60.0, 120.0)  # UK: at least 1 h a day (REF)
    # Compliance profiles: probability per day of a late return, and its lateness range.
    late_p: dict[str, float] = field(
        default_factory=lambda: {
            "compliant": 0.0,
            "sometimes_late": 0.25,
            "persistent_breacher": 0.5,
        }
    )
    late_minutes: tuple[float, float] = (5.0, 90.0)
    night_out_p: dict[str, float] = field(
        default_factory=lambda: {
            "compliant": 0.0,
            "sometimes_late": 0.0,
            "persistent_breacher": 0.25,
        }
    )
    zone_entry_p: dict[str, float] = field(
        default_factory=lambda: {
            "compliant": 0.0,
            "sometimes_late": 0.02,
            "persistent_breacher": 0.2,
        }
    )
    # Compliant people are home 10-120 minutes before the curfew starts.
    home_margin_min: tuple[float, float] = (10.0, 120.0)
    # After the curfew ends people leave within this many minutes (if they go out).
    leave_after_min: tuple[float, float] = (20.0, 150.0)
    stay_minutes: tuple[float, float] = (20.0, 120.0)  # a shop, park or friend's visit
    work_p: float = 0.35  # share of subjects with a workplace (assumption)
    # Bounded, so a compliant tag wearer's day is plausible: 1-4 outings.
    outings: tuple[int, int] = (1, 4)


@dataclass(frozen=True)
class WorldParams:
    # Reference point of the local metric frame: Bournemouth town centre (The Square).
    ref_lat: float = 50.7200
    ref_lon: float = -1.8795
    road_spacing_m: float = 220.0
    road_jitter: float = 0.3  # node jitter as a fraction of spacing
    road_drop_p: float = 0.18  # share of grid edges removed to make the network organic
    env_cell_m: float = 25.0  # resolution of the environment raster
    canyon_radius_m: float = 280.0  # town-centre core where streets are canyons
    open_patch_p: float = 0.05  # share of residential cells that are open ground (gardens)
    home_walls: tuple[int, int] = (0, 2)  # interior walls between home unit and tag indoors
    exclusion_radius_m: float = 350.0
    # Edges inside a town-centre exclusion zone cost this much more for routing, so routes
    # go round zones unless a trip starts or ends inside (compliant people avoid them).
    zone_edge_penalty: float = 25.0
    victim_radius_m: float = 500.0  # REF Spain: alert within 500 m of the victim
    dead_zone_radius_m: tuple[float, float] = (250.0, 600.0)


@dataclass(frozen=True)
class Params:
    gnss: GnssParams = field(default_factory=GnssParams)
    rf: RfParams = field(default_factory=RfParams)
    cellular: CellularParams = field(default_factory=CellularParams)
    energy: EnergyParams = field(default_factory=EnergyParams)
    movement: MovementParams = field(default_factory=MovementParams)
    world: WorldParams = field(default_factory=WorldParams)


DEFAULT = Params()
