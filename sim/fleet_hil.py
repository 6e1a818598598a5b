"""HIL tags in a fleet run: sim.hil.HilTag, with the beacons the firmware now advertises.

The simulator board (firmware/boards/sim.py) sends each advertisement as a `B <hex>` line;
sim.hil.HilTag (owned by the firmware/RF work) does not know that line yet, so this subclass
takes `B` lines out of each exchange and keeps them. The runner does not carry them to a home
unit: a HIL tag stays in GPS mode and uploads over its modem bridge, which is the path the
HIL tags cover in a fleet run (RF mode is covered by the fleet tags, same firmware).
"""

from __future__ import annotations

from sim.hil import HilTag


class FleetHilTag(HilTag):
    advertisements = 0

    def _exchange(self, lines: list[str], until: str) -> list[str]:
        got = super()._exchange(lines, until)
        kept = [x for x in got if not x.startswith("B ")]
        self.advertisements += len(got) - len(kept)
        return kept
