# Builds the tag application's parts at boot (App.__init__ takes them): reads the persistent
# state, applies the backend's configuration overrides, counts the boot, and creates the parts;
# then starts the application through its methods. It runs once per boot, so App.__init__
# loads this module for it and drops it after: its code does not stay in the heap all day
# (docs/firmware.md, "Heap").
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
    from firmware.rfmode import RfControl


def _i(cfg: "dict[str, object]", name: str) -> int:
    v = cfg[name]
    return v if type(v) is int else 0


class Parts:
    def __init__(self, board: "Board", cfg: "dict[str, object]") -> None:
        self.device = _i(cfg, "device")
        self.key = bytes.fromhex(str(cfg["key"]))
        self.files = board.files()
        state = self.state = State(self.files)
        over = state.get("cfg", {})
        if isinstance(over, dict):
            for k in over:
                if k in cfg:
                    cfg[k] = over[k]
        self.mono = ticks.Monotonic(board.ticks_ms())
        self.boot = (state.int("boot") + 1) & 0xFFFF
        state.set("boot", self.boot)  # before any frame of this boot is sealed
        self.store = Store(self.files, state, _i(cfg, "store_bytes"), _i(cfg, "seg_bytes"))
        self.ledger = Ledger(board.currents, 0)
        self.nmea = nmea.Reader()
        self.filter = FixFilter(_i(cfg, "hdop_max_d"), _i(cfg, "built_unix"))
        self.sampler = sampling.Sampler(cfg, state.int("fast_until"))  # type: ignore[arg-type]
        self.motion = motion.MotionNoFix(
            _i(cfg, "mnf_minutes"), _i(cfg, "mnf_window_min"), _i(cfg, "mnf_grace_min")
        )
        self.battery = bat.Battery(board.capacity_mah)
        debounce = _i(cfg, "debounce_ms")
        self.strap = Sensor(fr.SENSOR_STRAP, debounce, bool(state.get("latch_1", False)))
        self.case = Sensor(fr.SENSOR_CASE, debounce, bool(state.get("latch_2", False)))
        self.zones = None
        if state.get("zones", []):  # zones on flash: the zone watch loads now, and stays
            from firmware.zonewatch import ZoneWatch

            self.zones = ZoneWatch(state)
        self.downlink = commands.Downlink(self.device, self.key, state)
        from firmware.brokers import password

        unload("brokers")  # the login's only use of it: the name above keeps what it needs
        login = password(self.key)
        self.uplink = Uplink(
            board.modem,
            self.store,
            self.device,
            cfg,
            login,
            self.ledger,
            board.bursts.get("modem_tx", 0),
        )
        self.mode = modes.Mode()  # none yet: start() enters GPS mode

    def start(self, app: "App") -> "RfControl | None":
        """Start the built application (watchdog, boot record, GPS mode); its RF control."""
        board = app.board
        board.watchdog_start(app.setting("watchdog_ms"))
        app.add(fr.BOOT, 0, (board.reset_cause(), app.setting("fw_version")))
        app.set_mode(modes.GpsMode(), 0, fr.MODE_REASON_BOOT)
        # A paired tag on a board with a BLE radio beacons and can enter RF home mode; an
        # unpaired one, or a board without a radio, stays in GPS mode and never loads the RF
        # code (a fifth of the firmware's heap where modules load into RAM).
        from firmware.config import paired  # boot-only module (main.py drops it after boot)

        radio = getattr(board, "radio", None)
        if radio is None or not paired(app.cfg):
            return None
        from firmware.rfmode import RfControl

        return RfControl(app, radio)
