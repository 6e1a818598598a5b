# The board definition (pins, battery, current table) as the firmware sees it: the frozen
# `board_def` module generated from hw/boards/<name>.json into the image, or, on the unix
# port, the JSON file itself (the config's board_def path).
import json


def load(path: str = "") -> "dict[str, object]":
    if path:
        with open(path) as f:
            d = json.load(f)
        return {
            "name": d["name"],
            "battery_mah": d["battery_mah"],
            "pins": d["pins"],
            "currents_ua": d["currents_ua"],
            "bursts_uas": d.get("bursts_uas", {}),
        }
    from board_def import DEF  # type: ignore[import-not-found]  # frozen into the image

    return DEF  # type: ignore[no-any-return]
