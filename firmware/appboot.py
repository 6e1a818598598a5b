# Builds the tag application at boot (App.__init__ calls build): reads the persistent state,
# applies the backend's configuration overrides, counts the boot, and creates the parts. It
# runs once per boot, so App.__init__ loads this module for it and drops it after: its code
# does not stay in the heap all day (docs/firmware.md, "Heap").
from firmware import battery as bat
from firmware import commands, modes, motion, nmea, sampling, ticks
from firmware import frame as fr
from firmware.energy import Ledger
from firmware.fixfilter import FixFilter
from firmware.runtime import TYPE_CHECKING, unload
from firmware.state import State
from firmware.store import Store
from firmware.tamper import Sensor
from firmware.uplink import Uplink

if TYPE_CHECKING:
    from firmware.app import App
    from firmware.board import Board


def build(app: "App", board: "Board", cfg: "dict[str, object]") -> None:
    app.board = board
    app.cfg = cfg
    app.device = app._i("device")
    app.key = bytes.fromhex(str(cfg["key"]))
    app.client_id = "tag-%d" % app.device
    app.files = board.files()
    app.state = State(app.files)
    over = app.state.get("cfg", {})
    if isinstance(over, dict):
        for k in over:
            if k in cfg:
                cfg[k] = over[k]
    now = board.ticks_ms()
    app.mono = ticks.Monotonic(now)
    app.boot = (app.state.int("boot") + 1) & 0xFFFF
    app.state.set("boot", app.boot)  # before any frame of this boot is sealed
    app.seq = 0
    app.store = Store(app.files, app.state, app._i("store_bytes"), app._i("seg_bytes"))
    app.ledger = Ledger(board.currents, 0)
    app.nmea = nmea.Reader()
    app.filter = FixFilter(app._i("hdop_max_d"), app._i("built_unix"))
    app.sampler = sampling.Sampler(cfg)  # type: ignore[arg-type]
    app.sampler.fast_until_unix = app.state.int("fast_until")
    app.motion = motion.MotionNoFix(
        app._i("mnf_minutes"), app._i("mnf_window_min"), app._i("mnf_grace_min")
    )
    app.battery = bat.Battery(board.capacity_mah)
    app.strap = Sensor(fr.SENSOR_STRAP, app._i("debounce_ms"))
    app.case = Sensor(fr.SENSOR_CASE, app._i("debounce_ms"))
    app.strap.latched = bool(app.state.get("latch_1", False))
    app.case.latched = bool(app.state.get("latch_2", False))
    app.zones = None
    if app.state.get("zones", []):
        app.zone_watch()
    app.downlink = commands.Downlink(app.device, app.key, app.state)
    from firmware.brokers import password

    unload("brokers")  # the login's only use of it: the name above keeps what it needs
    app.uplink = Uplink(board.modem, app.store, app.device, cfg, password(app.key))
    app.uplink.ledger = app.ledger
    app.uplink.tx_uas = board.bursts.get("modem_tx", 0)
    app.gnss_on = False
    app.clock_base = -1
    app.clock_at_ms = 0
    app.clock_src = -1
    app.batch = []
    app.batch_fixes = 0
    app.batch_start_ms = 0
    app.batch_urgent = False
    app.flush = False
    app.zone_owed = False
    app.zone_retry_ms = -1
    app.next_battery_ms = 0
    app.next_status_ms = 0
    app.refusal_reported_ms = -60000
    app.store_errors = 0
    app.polls = 0
    app.fixes = 0
    app.mode = modes.Mode()
    board.watchdog_start(app._i("watchdog_ms"))
    app.add(fr.BOOT, 0, (board.reset_cause(), app._i("fw_version")))
    app.set_mode(modes.GpsMode(), 0, fr.MODE_REASON_BOOT)
    # A paired tag on a board with a BLE radio beacons and can enter RF home mode; an
    # unpaired one, or a board without a radio, stays in GPS mode and never loads the RF
    # code (a fifth of the firmware's heap where modules load into RAM).
    from firmware.config import paired  # boot-only module (main.py drops it after boot)

    radio = getattr(board, "radio", None)
    app.rf = None
    if radio is not None and paired(cfg):
        from firmware.rfmode import RfControl

        app.rf = RfControl(app, radio)
