# Tamper sensing: the strap's closed optical/conductive loop and the case switch. A raw change
# must hold for the debounce time before it counts (a knock bounces the switch); an opening
# latches until the backend clears it, so a strap cut and re-joined still shows.


class Sensor:
    def __init__(self, kind: int, debounce_ms: int = 200, latched: bool = False) -> None:
        self.kind = kind  # frame.SENSOR_STRAP or SENSOR_CASE
        self.debounce_ms = debounce_ms
        self.state = 0  # debounced: 0 closed, 1 open
        self.raw = 0
        self.raw_since = 0
        self.latched = latched  # kept in the state file across reboots

    def sample(self, raw_open: bool, now_ms: int) -> int:
        """Feed the raw reading; returns -1, or the new debounced state when it changes."""
        raw = 1 if raw_open else 0
        if raw != self.raw:
            self.raw = raw
            self.raw_since = now_ms
        if self.raw != self.state and now_ms - self.raw_since >= self.debounce_ms:
            self.state = self.raw
            if self.state:
                self.latched = True
            return self.state
        return -1

    def due_ms(self) -> int:
        """When a pending raw change will have been stable long enough (-1: nothing pending)."""
        if self.raw != self.state:
            return self.raw_since + self.debounce_ms
        return -1

    def clear(self) -> bool:
        """Clear the latch; refused (False) while the sensor is still open."""
        if self.state:
            return False
        self.latched = False
        return True
