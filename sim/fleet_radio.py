"""A fleet tag's end of the BLE link with its home unit, as the simulator carries it.

The firmware's RF control (firmware.rfmode) advertises its own signed beacons through the
board's radio (sim.fleet_board.FleetRadio); the runner decides with the RF model which ones
the home unit hears. When the unit then contacts the tag, its GATT operations arrive here
(from the simulator radio socket's threads) and are carried out on the firmware's GATT
service (firmware.homelink.HomeLink) under the fleet's lock, so they fall between two polls
of the tag as radio interrupts would: connect and write the acknowledgement, read the offload
chunk by chunk, write downlinks chunk by chunk.
"""

from __future__ import annotations

import threading
from typing import Any

from firmware import homelink


class TagRadio:
    def __init__(self, tag: int, lock: threading.RLock) -> None:
        self.tag = tag
        self.address = f"tag-{tag}"
        self.lock = lock
        self.service: Any = None  # set by the runner from the board's radio
        self.contacts = 0
        self.offloaded: list[bytes] = []  # every frame handed over (completeness accounting)
        self.downlinks = 0

    def take_ack(self, unit: int, data: bytes) -> str | None:
        with self.lock:
            s = self.service
            if s is None:
                return "off"  # the tag is flat: nothing answers
            s.connect()
            s.write_ack(data)
            self.contacts += 1
        return None

    def offload(self, unit: int) -> list[bytes] | str:
        with self.lock:
            s = self.service
            if s is None:
                return "off"
            frames: list[bytes] = []
            buf = b""
            for _ in range(100_000):
                chunk = s.read_offload()
                if not chunk:
                    break
                buf += chunk[1:]
                if chunk[0] & homelink.FINAL:
                    frames.append(buf)
                    buf = b""
            self.offloaded += frames
            return frames

    def take_downlink(self, unit: int, data: bytes) -> str | None:
        with self.lock:
            s = self.service
            if s is None:
                return "off"
            step = homelink.CHUNK
            for i in range(0, max(len(data), 1), step):
                last = i + step >= len(data)
                s.write_downlink(bytes((homelink.FINAL if last else 0,)) + data[i : i + step])
            self.downlinks += 1
        return None
