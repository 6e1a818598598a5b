"""The home unit's own HOME_DATA frames (presence, power, tamper, link, status, overflow),
signed with the unit's key. (device, boot, seq) must never repeat: the boot counter is
persisted and incremented at every start (Store.next_boot), and seq counts up within a boot."""

from __future__ import annotations

from dataclasses import dataclass

from firmware import frame as fr

FW_VERSION = 1  # reported in STATUS records; bump with behaviour the backend should know of


@dataclass(frozen=True)
class Signed:
    boot: int
    seq: int
    data: bytes


class OwnFrames:
    def __init__(self, unit: int, key: bytes, boot: int) -> None:
        if not 0 <= boot <= 0xFFFF:
            raise ValueError("boot counter out of range")
        self.unit = unit
        self._key = key
        self.boot = boot
        self.seq = 0

    def sign(self, records: list[fr.Record], now: float, urgent: bool = False) -> Signed:
        self.seq += 1
        flags = fr.FLAG_TIME_VALID | (fr.FLAG_URGENT if urgent else 0)
        f = fr.Frame(fr.HOME_DATA, self.unit, self.boot, self.seq, int(now), records, flags)
        return Signed(self.boot, self.seq, fr.encode(f, self._key))


def dt(now: float, event_time: float) -> int:
    """Seconds between an event and the frame that reports it, clamped to the record field."""
    return max(0, min(0xFFFF, int(now) - int(event_time)))


def presence(
    unit: int, tag: int, state: int, rssi: int, now: float, event_time: float
) -> fr.Record:
    rssi = max(-128, min(127, rssi))
    return fr.Record(
        fr.PRESENCE, dt=dt(now, event_time), home_unit=unit, tag=tag, state=state, rssi=rssi
    )


def saturate16(n: int) -> int:
    return max(0, min(0xFFFF, n))
