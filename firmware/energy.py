# Energy ledger: every power-hungry part reports its state changes; the ledger integrates
# current x time per part from the board's current table, so a simulated day yields a
# projected battery life, and the battery module an estimate of hours left.


class Ledger:
    def __init__(self, table: "dict[str, dict[str, int]]", now_ms: int = 0) -> None:
        self.table = table  # part -> state -> current in microamps
        self.state: dict[str, str] = {}
        self.since: dict[str, int] = {}
        self.uas: dict[str, int] = {}  # accumulated microamp-seconds per part
        self.rem: dict[str, int] = {}  # sub-second remainder (microamp-milliseconds)
        for part in table:
            self.state[part] = "off" if "off" in table[part] else "on"
            self.since[part] = now_ms
            self.uas[part] = 0
            self.rem[part] = 0

    def set(self, part: str, state: str, now_ms: int) -> None:
        if part not in self.table:
            return
        if state not in self.table[part]:
            raise ValueError("no current for %s %s" % (part, state))
        self._settle(part, now_ms)
        self.state[part] = state

    def charge(self, part: str, uas: int) -> None:
        """A one-off charge (a radio burst) in microamp-seconds."""
        self.uas[part] = self.uas.get(part, 0) + uas

    def _settle(self, part: str, now_ms: int) -> None:
        dt = now_ms - self.since[part]
        if dt > 0:
            q = self.table[part][self.state[part]] * dt + self.rem[part]
            self.uas[part] += q // 1000
            self.rem[part] = q % 1000
        self.since[part] = now_ms

    def total_uas(self, now_ms: int) -> int:
        for part in self.table:
            self._settle(part, now_ms)
        t = 0
        for part in self.uas:  # parts with one-off charges only (the BLE radio) count too
            t += self.uas[part]
        return t

    def total_uah(self, now_ms: int) -> int:
        return self.total_uas(now_ms) // 3600

    def average_ua(self, now_ms: int, since_ms: int = 0) -> int:
        span = now_ms - since_ms
        if span <= 0:
            return 0
        return self.total_uas(now_ms) * 1000 // span

    def breakdown_uah(self, now_ms: int) -> "dict[str, int]":
        self.total_uas(now_ms)
        out = {}
        for part in self.uas:
            out[part] = self.uas[part] // 3600
        return out
