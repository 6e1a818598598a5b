# Boots a tag (run once by main.py, then dropped): reads the provisioning config, loads the
# application's code, builds the board it names and the application. main.py runs as the
# program for as long as the tag runs, so what it holds stays in the heap all day; this code
# runs once a boot, and main unloads it after (docs/firmware.md, "Heap").
import gc

# The application's modules, each after the modules it imports. When they are .mpy files
# loaded into the heap (the unix port; a board run from .mpy files on its filesystem rather
# than a frozen image) a module's bytecode stays in the heap while its own imports load, so
# importing dependencies first, with a collection after each, keeps the boot's peak low. With
# a frozen image the order costs nothing. (firmware.zonewatch loads once the tag holds zones.)
_LEAVES_FIRST = (
    "ticks mac frame board files battery sampling modes motion nmea energy fixfilter"
    " state store tamper topics uplink commands"
)
_RF = "tagbeacon homelink proximity rfmode"  # only a tag paired with a home unit uses these


def preload(paired: bool) -> None:
    names = _LEAVES_FIRST + (" " + _RF if paired else "") + " app"
    for name in names.split():
        __import__("firmware." + name)
        gc.collect()


def make_board(cfg: "dict[str, object]") -> "object":
    name = cfg["board"]
    if name == "sim":
        from firmware.boards.sim import SimBoard

        return SimBoard(cfg)
    if name == "esp32s3":
        from firmware.boards.esp32s3 import Esp32S3Board

        return Esp32S3Board(cfg)
    from firmware.config import ConfigError

    raise ConfigError("unknown board %s" % name)


def boot(path: str) -> "tuple[object, object, int]":
    """Read the config, load the code, build the board and the application: (board, app,
    the heap taken by the code loaded so far, this module and the config loader included)."""
    from firmware import config

    cfg = config.load(path)
    preload(config.paired(cfg))
    board = make_board(cfg)
    from firmware.app import App

    gc.collect()
    code = gc.mem_alloc()  # the loaded code and interned names (a frozen image: in flash)
    app = App(board, cfg)  # type: ignore[arg-type]
    return board, app, code
