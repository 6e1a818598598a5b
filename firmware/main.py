# Boots a tag: reads the provisioning config (device id, key, server, thresholds), builds the
# board it names, and runs the application loop: poll, then sleep until the next wake.
# On a device this file is frozen and run with /config.json; on the unix port:
#   micropython firmware/main.py CONFIG.json
import gc
import sys

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


def boot(path: str) -> "tuple[object, object]":
    """Read the config, load the code, build the board and the application: (board, app)."""
    from firmware import config

    cfg = config.load(path)
    preload(config.paired(cfg))
    board = make_board(cfg)
    from firmware.app import App
    from firmware.runtime import unload

    gc.collect()
    code = gc.mem_alloc()  # the loaded code and interned names (a frozen image: in flash)
    app = App(board, cfg)  # type: ignore[arg-type]
    # The defaults and the config loader are needed only to boot: drop them (a few KiB; on
    # a device too, where the defaults dict is built in RAM at import). Counted out of code.
    del config
    gc.collect()
    before = gc.mem_alloc()
    unload("config")
    gc.collect()
    board.heap_code = code - (before - gc.mem_alloc())  # type: ignore[attr-defined]
    board.app = app  # type: ignore[attr-defined]
    return board, app


def main(path: str) -> None:
    board, app = boot(path)
    wake = app.poll(board.ticks_ms())  # type: ignore[attr-defined]
    while True:
        board.sleep_until(wake)  # type: ignore[attr-defined]
        wake = app.poll(board.ticks_ms())  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/config.json")
