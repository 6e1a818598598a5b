# Tag configuration: one dict of defaults, a JSON file from provisioning over it (device id,
# key, server, thresholds), and backend overrides (cmd_config) persisted in the state file.
# Needed only to boot: main.py drops this module once the application is built (the defaults
# and the loader are a few KiB of heap), so nothing that runs later may import it; what
# cmd_config may change (COMMAND_KEYS) lives in firmware/cmdrun.py.
import json

DEFAULTS = {
    "board": "esp32s3",  # firmware/boards/<board>.py
    "device": 0,
    "key": "",  # 32-byte device key, hex
    "brokers": [],  # MQTT brokers, "host:port", in the order to try them (docs/protocol.md)
    "fw_version": 1,
    "built_unix": 1735689600,  # the firmware's build date: GNSS time before it is not believed
    "fix_moving_s": 60,  # one fix a minute while moving
    "fix_fast_s": 15,  # while the backend has raised the rate (zone, violation)
    "fix_rest_s": 3600,  # at rest
    "rest_after_s": 600,  # no motion this long = at rest
    "hdop_max_d": 50,
    "batch_fixes": 10,
    "batch_s": 600,
    "batch_max_records": 40,
    "mnf_minutes": 10,  # motion without fix: minutes of motion
    "mnf_window_min": 60,  # ... within this window
    "mnf_grace_min": 10,  # then escalate after this grace
    "debounce_ms": 200,
    "battery_every_s": 60,
    "status_every_s": 3600,
    "backoff_min_s": 30,
    "backoff_max_s": 1800,
    "backoff_moving_s": 120,  # ... but at most this while moving (docs/firmware.md, Uplink)
    "connect_timeout_s": 120,
    "ack_wait_s": 60,
    "linger_s": 15,
    "send_window": 8,
    "store_bytes": 786432,  # of a 1 MB littlefs partition
    "seg_bytes": 16384,
    "watchdog_ms": 60000,
    "max_sleep_s": 600,
    "lease_s": 300,  # RF mode: the longest lease the tag grants a home unit's ack
    "home_unit": 0,  # the paired home unit (0: not paired, never RF mode)
    "pairing_key": "",  # 64 hex digits: firmware.beacon.pairing_key(unit key, device)
    "beacon_gps_s": 15,  # beacon interval in GPS mode (how soon arriving home is noticed)
    "beacon_rf_s": 30,  # relaxed beacon interval in RF mode (each beacon keeps the lease)
    "rf_enter_acks": 3,  # good acks ...
    "rf_enter_window_s": 120,  # ... within this window enter RF mode
    "rf_hold_s": 120,  # after a lease expiry, stay in GPS mode at least this long
    "home_lat_e7": 0,  # the home's position for RF-home FIX records ...
    "home_lon_e7": 0,
    "home_acc_dm": 0,  # ... and its accuracy (0: no RF-home fixes, MODE records only)
    "zone_near_m": 300,  # within this of a pushed zone's edge: fast fixes, prompt batches
    "zone_batch_s": 60,  # ... batches close after this long (at the edge: every fix at once)
    "zone_hold_s": 120,  # ... for this long after the last fix near a zone
    "fs_root": "/flash/tw",
}


class ConfigError(ValueError):
    pass


def load(path: str) -> "dict[str, object]":
    """Defaults overlaid with the provisioning file; unknown keys and wrong types refused."""
    try:
        with open(path) as f:
            given = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError("cannot read config %s: %s" % (path, e)) from e
    return merge(given)


def merge(given: "object") -> "dict[str, object]":
    if not isinstance(given, dict):
        raise ConfigError("config must be a JSON object")
    cfg: dict[str, object] = dict(DEFAULTS)
    for k in given:
        v = given[k]
        if k in DEFAULTS:
            if type(v) is not type(DEFAULTS[k]):
                raise ConfigError("%s must be %s" % (k, type(DEFAULTS[k]).__name__))
            cfg[k] = v
        elif k.startswith("board_"):  # board-specific settings pass through
            cfg[k] = v
        else:
            raise ConfigError("unknown config key %s" % k)
    key = cfg["key"]
    if not isinstance(key, str) or len(key) != 64:
        raise ConfigError("key must be 64 hex digits")
    try:
        bytes.fromhex(key)
    except ValueError:
        raise ConfigError("key must be 64 hex digits") from None
    from firmware.brokers import MAX_BROKERS, endpoint
    from firmware.runtime import unload

    unload("brokers")  # dropped before the code loads: the names above keep what this needs

    brokers = cfg["brokers"]
    if not isinstance(brokers, list) or len(brokers) > MAX_BROKERS:
        raise ConfigError("brokers must be a list of at most %d host:port" % MAX_BROKERS)
    for b in brokers:
        try:
            endpoint(b)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    pk = cfg["pairing_key"]
    if pk != "":
        try:
            if not isinstance(pk, str) or len(pk) != 64:
                raise ValueError
            bytes.fromhex(pk)
        except ValueError:
            raise ConfigError("pairing_key must be empty or 64 hex digits") from None
    return cfg


def paired(cfg: "dict[str, object]") -> bool:
    """Paired with a home unit (an id and its pairing key): only then can the tag use RF home
    mode, so only then does it load the RF code and beacon."""
    unit, pk = cfg.get("home_unit", 0), cfg.get("pairing_key", "")
    return type(unit) is int and unit != 0 and type(pk) is str and len(pk) == 64
