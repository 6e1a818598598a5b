# Runs a tag: boots it (firmware/tagboot.py, dropped after), then the application loop: poll,
# then sleep until the next wake.
# On a device this file is frozen and run with /config.json; on the unix port:
#   micropython -m firmware.main CONFIG.json
import gc
import sys

from firmware.runtime import unload


def main(path: str) -> None:
    from firmware import tagboot

    board, app, code = tagboot.boot(path)
    # The config loader (defaults dict, loader: a few KiB; on a device too, where the
    # defaults dict is built in RAM at import) and the boot code are needed only to boot:
    # dropped, and counted out of the code the tag holds all day.
    del tagboot
    gc.collect()
    before = gc.mem_alloc()
    unload("config")
    unload("tagboot")
    gc.collect()
    board.heap_code = code - (before - gc.mem_alloc())  # type: ignore[attr-defined]
    board.app = app  # type: ignore[attr-defined]
    wake = app.poll(board.ticks_ms())  # type: ignore[attr-defined]
    while True:
        board.sleep_until(wake)  # type: ignore[attr-defined]
        wake = app.poll(board.ticks_ms())  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/config.json")
