# The board (HAL) interface the application logic talks to. The logic never touches machine,
# sockets or the wall clock: a board object supplies every input and output below. Times are
# the board's millisecond ticks (they wrap; the logic uses firmware.ticks). Boards live in
# firmware/boards/; tests/firmware/test_boards.py checks each implements the whole interface.
from firmware.runtime import TYPE_CHECKING

MODEM_OFF = 0
MODEM_CONNECTING = 1
MODEM_ONLINE = 2
MODEM_FAILED = 3

# Methods every board provides (the Protocol below gives their signatures), as names separated
# by spaces: one string costs the unix port's heap less than a tuple of strings (the tests
# split them; the device never reads them).
BOARD_METHODS = (
    "ticks_ms sleep_until reset_cause watchdog_start watchdog_feed files gnss_power gnss_read"
    " strap_open case_open battery_mv charger motion vibrate"
)
BOARD_ATTRIBUTES = "name capacity_mah currents bursts modem"
MODEM_METHODS = "power connect status publish receive step"
# Optional: a board with a BLE radio has `radio` with these methods (RF home mode).
RADIO_METHODS = "serve advertise"

if TYPE_CHECKING:
    from typing import Protocol

    from firmware.files import Files

    class Modem(Protocol):
        """Cellular modem with an MQTT session. Every call returns at once: connect() starts
        the work (register, open the session, subscribe) and status() reports how it went."""

        def power(self, on: bool) -> None: ...
        # An MQTT session on `broker` ("host:port", one of the provisioned list), logged in
        # as `client_id` (the username) with `password`.
        def connect(self, broker: str, client_id: str, password: str, down_topic: str) -> None: ...
        def status(self) -> int: ...  # MODEM_*
        def publish(self, topic: str, payload: bytes) -> bool: ...  # queued QoS 1
        def receive(self) -> "tuple[str, bytes] | None": ...
        def step(self, now_ms: int) -> int: ...  # ms until it needs a step again, -1 idle

    class Radio(Protocol):
        """BLE peripheral. advertise() puts one beacon on air as a short connectable burst;
        serve() hands it the GATT service logic (firmware.homelink.HomeLink), whose methods
        the radio calls as the home unit connects, writes and reads."""

        def serve(self, service: object) -> None: ...
        def advertise(self, adv: bytes) -> None: ...

    class Board(Protocol):
        name: str
        capacity_mah: int
        currents: "dict[str, dict[str, int]]"  # part -> state -> microamps (energy ledger)
        bursts: "dict[str, int]"  # one-off charges in microamp-seconds ("modem_tx")
        modem: Modem

        def ticks_ms(self) -> int: ...
        def sleep_until(self, wake_ticks: int) -> None: ...  # light sleep or an interrupt
        def reset_cause(self) -> int: ...  # a frame.RESET_* value
        def watchdog_start(self, timeout_ms: int) -> None: ...
        def watchdog_feed(self) -> None: ...
        def files(self) -> Files: ...
        def gnss_power(self, on: bool) -> None: ...
        def gnss_read(self) -> "bytes | None": ...  # what the UART holds now, never waits
        def strap_open(self) -> bool: ...
        def case_open(self) -> bool: ...
        def battery_mv(self) -> int: ...
        def charger(self) -> "tuple[bool, bool]": ...  # (connected, charging)
        def motion(self) -> int: ...  # accelerometer wake-ups since the last call
        def vibrate(self, pattern: int, repeats: int) -> None: ...
