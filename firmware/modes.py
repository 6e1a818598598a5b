# Operating modes. The application delegates positioning and transport to the current mode:
# GPS mode (this file) duty-cycles the GNSS receiver and uplinks over the cellular modem. RF
# home mode (firmware/rfmode.py) is another Mode: GNSS and modem off, beacons to the home
# unit, records handed over for relay; it switches with App.set_mode(), which records a MODE
# record.
from firmware import frame as fr
from firmware import sampling
from firmware.runtime import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.app import App


class Mode:
    code = -1
    home_unit = 0

    def enter(self, app: "App", now_ms: int) -> None:
        pass

    def leave(self, app: "App", now_ms: int) -> None:
        pass

    def step(self, app: "App", now_ms: int) -> int:
        """Due positioning/transport work; returns the next deadline (monotonic ms, -1 none)."""
        return -1

    def gnss_expected(self) -> bool:
        """Whether a missing fix means something (motion-without-fix only counts then)."""
        return False


class GpsMode(Mode):
    code = fr.MODE_GPS

    def leave(self, app: "App", now_ms: int) -> None:
        app.gnss_set(False, now_ms)

    def gnss_expected(self) -> bool:
        return True

    def step(self, app: "App", now_ms: int) -> int:
        s = app.sampler
        interval = s.interval_s(now_ms, app.motion.last_motion_ms, app.clock_unix(now_ms))
        if s.state == sampling.OFF:
            if s.wants_on(now_ms, interval):
                app.gnss_set(True, now_ms)
        elif s.should_power_off(now_ms, interval):
            app.gnss_set(False, now_ms)
        if s.state == sampling.OFF:
            gnss_due = s.next_ms
        elif s.state == sampling.ACQUIRING:
            # Nothing is due while it searches but giving up at the budget, which is seen
            # at a read of the receiver's output: every second from now (App.poll).
            gnss_due = now_ms + (s.acquire_deadline_ms() - now_ms + 999) // 1000 * 1000
        else:
            gnss_due = now_ms + 1000
        up_due = app.uplink.step(now_ms, app.client_id, interval != s.cfg["fix_rest_s"])
        if up_due < 0:
            return gnss_due
        return min(gnss_due, up_due)
