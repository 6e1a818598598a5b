# What each backend command does to the tag (docs/protocol.md, command records). Commands are
# rare (a few a day at most), so this module is loaded only to run a verified, fresh command
# frame and dropped again (App.handle_downlink; docs/firmware.md, "Heap"): a tag does not keep
# the handlers' code in its heap all day for them.
from firmware import frame as fr
from firmware.runtime import TYPE_CHECKING, unload

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


def _keep(a: "App", name: str, value: object) -> None:
    """A setting the backend changed: in force now and after a reboot (state "cfg", laid
    over the provisioned configuration at boot)."""
    a.cfg[name] = value
    over = a.state.get("cfg", {})
    if isinstance(over, dict):
        over[name] = value
        a.state.set("cfg", over)


def brokers(a: "App", recs: "list[fr.Record]") -> int:
    """The cmd_broker records of one command frame are the new broker list, in order: set
    all together or refused all together (a partial list could strand the tag)."""
    from firmware.brokers import MAX_BROKERS, endpoint

    unload("brokers")  # this command's only: the names above keep what it needs
    if len(recs) > MAX_BROKERS:
        return fr.RESULT_BAD_ARGS
    out = []
    for r in recs:
        try:
            b = "%s:%d" % (bytes(r.extra).decode(), r.port)
            endpoint(b)
        except ValueError:  # UnicodeError is one
            return fr.RESULT_BAD_ARGS
        out.append(b)
    a.uplink.set_brokers(out)
    _keep(a, "brokers", out)
    return fr.RESULT_OK


def run_frame(a: "App", f: "fr.Frame", now_ms: int) -> None:
    """Carry out a verified, fresh command frame, answering each record with its result."""
    listed = [r for r in f.records if r.type == fr.CMD_BROKER]
    told = brokers(a, listed) if listed else 0
    for rec in f.records:
        res = told if rec.type == fr.CMD_BROKER else run(a, rec, now_ms)
        a.add(fr.COMMAND_RESULT, now_ms, (f.seq, res))


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
            _keep(a, name, value)
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
