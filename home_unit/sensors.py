"""The unit's own sensors, read from files so the same code serves a Linux SBC and a test.

- Mains and the backup battery come from the kernel's power-supply class
  (/sys/class/power_supply/*/): a supply of type "Mains" (or "USB") with `online`, and a
  "Battery" (or "UPS") with `capacity` in percent — what UPS HATs and PMICs expose.
- Tamper inputs (a tilt/motion switch for "moved", a case switch) are files holding 0 or 1:
  a GPIO exported by the board's overlay, or any file a small helper keeps up to date.
A missing or unreadable file reads as "unknown" and is counted, never as a change."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Reading:
    mains: bool | None  # None: unknown
    battery: int | None  # percent of the backup cell
    moved: bool | None
    case_open: bool | None

    def over(self, older: Reading) -> Reading:
        """This reading, with each input it could not read taken from `older`."""
        pairs = zip(astuple(self), astuple(older), strict=True)
        return Reading(*(new if new is not None else old for new, old in pairs))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class FileSensors:
    def __init__(
        self,
        power_supply_dir: Path | None = None,
        moved_file: Path | None = None,
        case_file: Path | None = None,
    ) -> None:
        self.power_supply_dir = power_supply_dir
        self.moved_file = moved_file
        self.case_file = case_file
        self.unreadable = 0  # counted each time a configured input cannot be read

    def _flag(self, path: Path | None) -> bool | None:
        if path is None:
            return None
        text = _read(path)
        if text not in ("0", "1"):
            self.unreadable += 1
            return None
        return text == "1"

    def _power(self) -> tuple[bool | None, int | None]:
        if self.power_supply_dir is None:
            return None, None
        mains: bool | None = None
        battery: int | None = None
        try:
            supplies = sorted(self.power_supply_dir.iterdir())
        except OSError:
            self.unreadable += 1
            return None, None
        for sup in supplies:
            kind = _read(sup / "type")
            if kind in ("Mains", "USB"):
                online = _read(sup / "online")
                if online in ("0", "1"):
                    mains = (mains or False) or online == "1"
                else:
                    self.unreadable += 1
            elif kind in ("Battery", "UPS"):
                cap = _read(sup / "capacity")
                if cap is not None and cap.isdigit() and 0 <= int(cap) <= 100:
                    battery = int(cap)
                else:
                    self.unreadable += 1
        return mains, battery

    def read(self) -> Reading:
        mains, battery = self._power()
        return Reading(mains, battery, self._flag(self.moved_file), self._flag(self.case_file))
