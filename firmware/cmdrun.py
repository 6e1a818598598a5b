# What each backend command does to the tag (docs/protocol.md, command records). Commands are
# rare (a few a day at most), so this module is loaded only to run a verified, fresh command
# frame and dropped again (App.handle_downlink; docs/firmware.md, "Heap"): a tag does not keep
# the handlers' code in its heap all day for them.
from firmware import frame as fr
from firmware.runtime import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.app import App

# cmd_config keys (docs/protocol.md) -> (setting name, minimum, maximum) this firmware honours.
COMMAND_KEYS = {
    1: ("fix_moving_s", 5, 3600),
    2: ("fix_fast_s", 5, 600),
    3: ("fix_rest_s", 60, 86400),
    4: ("batch_fixes", 1, 40),
    5: ("batch_s", 10, 86400),
    6: ("fast_until", 0, 0x7FFFFFFF),
    7: ("hdop_max_d", 5, 255),
    8: ("lease_s", 30, 86400),
}


def config_change(rec: "fr.Record") -> "tuple[str, int] | int":
    """A cmd_config record -> (setting name, value), or a result code if refused."""
    spec = COMMAND_KEYS.get(rec.key)
    if spec is None:
        return fr.RESULT_UNKNOWN
    name, lo, hi = spec
    if rec.value < lo or rec.value > hi:
        return fr.RESULT_BAD_ARGS
    return name, rec.value


def run(a: "App", rec: "fr.Record", now_ms: int) -> int:
    """Carry out one command record on the application; its result code."""
    t = rec.type
    if t == fr.CMD_CONFIG:
        ch = config_change(rec)
        if type(ch) is int:
            return ch
        name, value = ch  # type: ignore[misc]
        if name == "fast_until":
            a.sampler.fast_until(value)
            a.state.set("fast_until", value)
        else:
            a.cfg[name] = value
            over = a.state.get("cfg", {})
            if isinstance(over, dict):
                over[name] = value
                a.state.set("cfg", over)
            if name == "hdop_max_d":
                a.filter.hdop_limit(value)
        return fr.RESULT_OK
    if t == fr.CMD_NOTIFY:
        a.board.vibrate(rec.pattern, rec.repeats)
        return fr.RESULT_OK
    if t == fr.CMD_LOCATE:
        a.sampler.locate_now(now_ms)
        return fr.RESULT_OK
    if t == fr.CMD_TIME_SYNC:
        a.set_clock(rec.unix, now_ms, fr.CLOCK_COMMAND)
        return fr.RESULT_OK
    if t == fr.CMD_ZONE:
        ok = a.zone_watch().set(rec.slot, rec.lat_e7, rec.lon_e7, rec.radius_m)
        return fr.RESULT_OK if ok else fr.RESULT_BAD_ARGS
    if t == fr.CMD_CLEAR_TAMPER:
        sensor = a.strap if rec.sensor == fr.SENSOR_STRAP else None
        if rec.sensor == fr.SENSOR_CASE:
            sensor = a.case
        if sensor is None or not sensor.clear():
            return fr.RESULT_BAD_ARGS
        a.state.set("latch_%d" % sensor.kind, False)
        return fr.RESULT_OK
    return fr.RESULT_UNKNOWN
