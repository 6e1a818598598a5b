"""The one interface every home-unit radio implements (docs/home-unit.md, "Radio interface").

Events: a beacon heard (manufacturer payload, RSSI, time, address). Actions, inside one
contact with a tag: send it the signed acknowledgement, receive the frames it offloads, and
deliver a downlink frame (ACK or COMMAND from the backend) to it. The bleak backend on a
Linux SBC and the simulator's loopback socket both implement it; the daemon never knows which
one it drives."""

from __future__ import annotations

import abc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

# A radio stops reading an offload after this many frames in one contact (a tag that streams
# without end is cut off; the rest come at the next contact). An offload this long may be
# incomplete, so the daemon does not take it as all the tag holds.
MAX_OFFLOAD_FRAMES = 256


@dataclass(frozen=True)
class BeaconHeard:
    """One advertisement carrying our company id. `payload` is the manufacturer data after
    the 2-byte company id (what firmware.beacon.encode_beacon returns); `time` is Unix
    seconds on the home unit's clock; `address` is whatever the radio needs to reach the tag
    again (a BLE address, or the simulator's name for the tag)."""

    payload: bytes
    rssi: int
    time: float
    address: str


BeaconCallback = Callable[[BeaconHeard], None]


class RadioError(Exception):
    """A radio action failed (tag out of range, connection dropped, GATT error). `reason` is a
    short stable code that the daemon counts."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


class TagLink(abc.ABC):
    """An open contact with one tag (a GATT connection, or a simulator session)."""

    @abc.abstractmethod
    async def send_ack(self, ack: bytes) -> None:
        """Write the 28-byte signed home acknowledgement (firmware.beacon.encode_home_ack)."""

    @abc.abstractmethod
    async def receive_offload(self) -> list[bytes]:
        """Every frame the tag offloads in this contact (at most MAX_OFFLOAD_FRAMES), each
        exactly as the tag signed it."""

    @abc.abstractmethod
    async def deliver_downlink(self, frame: bytes) -> None:
        """Hand the tag one ACK or COMMAND frame from the backend, byte for byte."""


class Radio(abc.ABC):
    @abc.abstractmethod
    async def start(self, on_beacon: BeaconCallback) -> None:
        """Begin listening; `on_beacon` is called on the event loop for each beacon heard."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop listening and close every contact."""

    @abc.abstractmethod
    def contact(self, address: str) -> AbstractAsyncContextManager[TagLink]:
        """Open a contact with the tag at `address`; raises RadioError if it cannot be reached."""
