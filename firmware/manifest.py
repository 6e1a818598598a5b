# Freeze manifest for the ESP32-S3 tag image (MicroPython's `make BOARD=ESP32_GENERIC_S3
# FROZEN_MANIFEST=.../firmware/manifest.py`). Frozen code and its interned names live in
# flash, so the heap holds only data. Before building, generate the board definition module:
#   python -m hw.boarddef esp32s3 build/board_def.py
# The functions used below are provided by MicroPython's manifest tool (tools/manifestfile.py).
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 - the port's own frozen modules

package(  # noqa: F821
    "firmware",
    files=(
        "__init__.py",
        "runtime.py",
        "frame.py",
        "framedict.py",  # frozen, so to_dict() works; loaded only when a tool asks for it
        "mac.py",
        "tagbeacon.py",  # the tag's half of beacon.py (which the home unit uses)
        "topics.py",
        "ticks.py",
        "nmea.py",
        "fixfilter.py",
        "zonewatch.py",
        "sampling.py",
        "energy.py",
        "battery.py",
        "tamper.py",
        "motion.py",
        "files.py",
        "state.py",
        "store.py",
        "config.py",
        "brokers.py",  # broker endpoints: loaded to check a list (boot, cmd_broker)
        "commands.py",
        "cmdrun.py",  # the command handlers: loaded only to run a command
        "board.py",
        "uplink.py",
        "modes.py",
        "proximity.py",
        "homelink.py",
        "rfmode.py",
        "mqtt.py",
        "app.py",
        "appboot.py",  # builds the App at boot; dropped after
        "tagboot.py",  # boots the tag (config, code, board, App); dropped after
        "main.py",
        "boards/__init__.py",
        "boards/definition.py",
        "boards/sim7080g.py",
        "boards/esp32s3.py",
        "boards/esp32s3_ble.py",
    ),
    base_path="..",
    opt=3,
)
module("board_def.py", base_path="../build")  # noqa: F821 - generated from hw/boards
