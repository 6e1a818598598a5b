# Exclusion zones the backend pushed to the tag (cmd_zone), so the tag itself knows when an
# entry matters: near a zone it samples fast and closes batches after zone_batch_s; at or
# inside a zone's edge every fix is uploaded at once. Without this the backend hears of an
# approach only with the next 10-minute batch, too late to ask for anything.
from firmware import fixfilter
from firmware.runtime import const

_SLOTS = const(8)
FAR = 0
NEAR = 1
AT = 2  # inside, or within the fix's accuracy of the edge


class ZoneWatch:
    def __init__(self, state: "object") -> None:
        self.state = state  # firmware.state.State: "zones" = [[slot, lat, lon, radius_m], ...]
        self.zones: list[list[int]] = []
        saved = state.get("zones", [])  # type: ignore[attr-defined]
        if isinstance(saved, list):
            for z in saved:
                if isinstance(z, list) and len(z) == 4:
                    self.zones.append(z)

    def set(self, slot: int, lat_e7: int, lon_e7: int, radius_m: int) -> bool:
        """Store (radius > 0) or clear (radius 0) a slot; False for bad arguments."""
        if slot >= _SLOTS or abs(lat_e7) > 900000000 or abs(lon_e7) > 1800000000:
            return False
        self.zones = [z for z in self.zones if z[0] != slot]
        if radius_m > 0:
            self.zones.append([slot, lat_e7, lon_e7, radius_m])
        self.state.set("zones", self.zones)  # type: ignore[attr-defined]
        return True

    def check(self, lat_e7: int, lon_e7: int, acc_dm: int, near_m: int) -> int:
        """FAR, NEAR (within near_m of an edge) or AT (inside or within the accuracy)."""
        out = FAR
        for z in self.zones:
            edge = fixfilter.distance_m(z[1], z[2], lat_e7, lon_e7) - z[3]
            if edge <= acc_dm / 10:
                return AT
            if edge <= near_m:
                out = NEAR
        return out
