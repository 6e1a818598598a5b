# Boots a tag: reads the provisioning config (device id, key, server, thresholds), builds the
# board it names, and runs the application loop: poll, then sleep until the next wake.
# On a device this file is frozen and run with /config.json; on the unix port:
#   micropython firmware/main.py CONFIG.json
import gc
import sys

from firmware import config

# The application's modules, each after the modules it imports. When they are .mpy files
# loaded into the heap (the unix port; a board run from .mpy files on its filesystem rather
# than a frozen image) a module's bytecode stays in the heap while its own imports load, so
# importing dependencies first, with a collection after each, keeps the boot's peak low. With
# a frozen image the order costs nothing.
_LEAVES_FIRST = (
    "ticks mac frame board files battery sampling modes motion nmea energy fixfilter zonewatch"
    " state store tamper topics uplink commands"
)
_RF = "beacon homelink proximity rfmode"  # only a tag paired with a home unit uses these


def preload(cfg: "dict[str, object]") -> None:
    names = _LEAVES_FIRST + (" " + _RF if config.paired(cfg) else "") + " app"
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
    raise config.ConfigError("unknown board %s" % name)


def main(path: str) -> None:
    cfg = config.load(path)
    preload(cfg)
    board = make_board(cfg)
    from firmware.app import App

    gc.collect()
    # What the loaded code and interned names take (a frozen image keeps these in flash).
    board.heap_code = gc.mem_alloc()  # type: ignore[attr-defined]
    app = App(board, cfg)  # type: ignore[arg-type]
    board.app = app  # type: ignore[attr-defined]
    wake = app.poll(board.ticks_ms())  # type: ignore[attr-defined]
    while True:
        board.sleep_until(wake)  # type: ignore[attr-defined]
        wake = app.poll(board.ticks_ms())  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/config.json")
