"""RF home mode: projected tag battery life for a day with 14 h at home in RF mode
beside the same day in GPS mode all day, from the firmware's energy ledger.

Both runs drive the real application step machine (firmware.app.App, in-process on CPython)
through the same day: at home at rest 00:00-07:00, out and moving 07:00-17:00, at home at
rest 17:00-24:00. In the RF run the home unit (tests/firmware/fakehome.py, the GATT contract
of docs/home-unit.md) hears the tag while it is at home; in the GPS run nobody does. Currents
and BLE burst charges come from hw/boards/esp32s3.json and its battery capacity."""

from __future__ import annotations

import tempfile
from typing import Any

from firmware import config
from firmware import frame as fr
from firmware.app import App
from firmware.files import Files
from hw import boarddef
from tests.firmware import fakeboard as fb
from tests.firmware.fakehome import UNIT, FakeHome, FakeRadio, pairing

HOUR = 3_600_000


def day(rf_home: bool, active_home: bool = False) -> dict[str, Any]:
    """active_home: the wearer moves about indoors (no sky) 06:00-07:00 and 17:00-23:00."""
    d = boarddef.load("esp32s3")
    with tempfile.TemporaryDirectory() as tmp:
        board = fb.FakeBoard(Files(tmp + "/tw"))
        board.currents = d["currents_ua"]
        board.bursts = d["bursts_uas"]
        board.capacity_mah = d["battery_mah"]
        board.radio = FakeRadio()
        cfg = dict(fb.CFG, home_unit=UNIT, pairing_key=pairing(fb.DEVICE))
        app = App(board, config.merge(cfg))
        home = FakeHome(fb.DEVICE, fb.KEY, board)

        def at_home(b: fb.FakeBoard) -> None:
            b.moving = False
            b.sky = False  # indoors
            b.radio.home = home if rf_home else None

        def out(b: fb.FakeBoard) -> None:
            b.moving = True
            b.sky = True
            b.radio.home = None

        def about(b: fb.FakeBoard) -> None:
            b.moving = active_home

        def asleep(b: fb.FakeBoard) -> None:
            b.moving = False

        events = [(0, at_home), (6 * HOUR, about), (7 * HOUR, out), (17 * HOUR, at_home),
                  (17 * HOUR + 1, about), (23 * HOUR, asleep)]  # fmt: skip
        polls = fb.run(app, board, 24 * HOUR, events)
        uah = app.ledger.breakdown_uah(app.mono.ms)
        total = app.ledger.total_uah(app.mono.ms)
        switches: list[tuple[int, int]] = []
        for f in fb.frames(board) + [fr.decode(x, fb.KEY) for x in home.relayed.values()]:
            switches += [(f.time_of(r), r.mode) for r in f.records if r.type == fr.MODE]
        rf_s = 0
        since = -1
        for t, mode in [*sorted(switches), (fb.T0 + 24 * 3600, fr.MODE_GPS)]:
            if mode == fr.MODE_RF and since < 0:
                since = t
            elif mode == fr.MODE_GPS and since >= 0:
                rf_s += t - since
                since = -1
        return {
            "uah": uah,
            "total_uah": total,
            "capacity_mah": d["battery_mah"],
            "polls": polls,
            "fixes": app.fixes,
            "rf_hours": rf_s / 3600,
            "beacons": len(board.radio.adverts),
            "pending": app.store.pending(),
        }


def rows() -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    for active, what in ((False, "at rest at home"), (True, "moving about indoors 7 h")):
        out += _pair(day(False, active), day(True, active), what)
    return out


def _pair(gps: dict[str, Any], rf: dict[str, Any], what: str) -> list[tuple[str, str, str, str]]:
    cap = gps["capacity_mah"]

    def hours(r: dict[str, Any]) -> float:
        return float(cap * 1000 / r["total_uah"] * 24)

    def parts(r: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v / 1000:.2f}" for k, v in sorted(r["uah"].items()))

    return [
        (
            "rf home",
            f"battery, 14 h home ({what}) + 10 h out, GPS mode all day",
            f"{hours(gps):.0f} h on {cap} mAh ({gps['total_uah'] / 1000:.1f} mAh/day: "
            f"{parts(gps)}; {gps['fixes']} fixes)",
            "baseline",
        ),
        (
            "rf home",
            f"battery, same day, {rf['rf_hours']:.1f} h of it in RF mode at home",
            f"{hours(rf):.0f} h on {cap} mAh ({rf['total_uah'] / 1000:.1f} mAh/day: "
            f"{parts(rf)}; {rf['fixes']} fixes, {rf['beacons']} beacons)",
            f"{hours(rf) / hours(gps):.2f}x GPS mode all day; "
            f"{(gps['total_uah'] - rf['total_uah']) / 1000:.1f} mAh/day saved",
        ),
    ]
