"""The reference victim-device client's sampling (home_unit/victim_device.py): the backend's
request to sample fast is honoured for a bounded time, and a warning speeds it up too."""

from __future__ import annotations

from firmware import frame as fr
from home_unit import victim_device as vd

KEY = bytes(range(32))
T = 1_788_220_800


def command(seq: int, rec: fr.Record) -> bytes:
    return fr.encode(fr.Frame(fr.COMMAND, 9001, 0, seq, T, [rec], fr.FLAG_TIME_VALID), KEY)


def result(reply: bytes | None) -> int:
    assert reply is not None
    return int(fr.decode(reply, KEY).records[0].result)


def test_a_request_to_sample_fast_is_honoured_until_its_time_and_no_longer_than_the_bound() -> None:
    dev = vd.VictimDevice(9001, KEY, boot=1)
    assert dev.interval(T) == vd.FIX_S
    fast = fr.Record(fr.CMD_CONFIG, key=fr.CFG_FAST_UNTIL, value=T + 600)
    assert result(dev.downlink(command(1, fast), T)) == fr.RESULT_OK
    assert dev.interval(T + 599) == vd.FAST_FIX_S and dev.interval(T + 600) == vd.FIX_S
    # A day ahead is cut to the bound from the command's arrival.
    hours = fr.Record(fr.CMD_CONFIG, key=fr.CFG_FAST_UNTIL, value=T + 86400)
    assert result(dev.downlink(command(2, hours), T + 100)) == fr.RESULT_OK
    end = T + 100 + vd.MAX_FAST_FOR_S
    assert dev.interval(end - 1) == vd.FAST_FIX_S and dev.interval(end) == vd.FIX_S
    # An earlier time does not shorten what was asked; other settings are not a phone's.
    short = fr.Record(fr.CMD_CONFIG, key=fr.CFG_FAST_UNTIL, value=T + 200)
    assert result(dev.downlink(command(3, short), T + 150)) == fr.RESULT_OK
    batch = fr.Record(fr.CMD_CONFIG, key=fr.CFG_BATCH_S, value=60)
    assert result(dev.downlink(command(4, batch), T + 150)) == fr.RESULT_UNKNOWN
    assert dev.fast_until == end


def test_a_warning_makes_the_device_sample_fast_for_a_while() -> None:
    dev = vd.VictimDevice(9001, KEY, boot=1)
    note = fr.Record(fr.CMD_NOTIFY, pattern=3, repeats=5, message=vd.WARNING)
    assert result(dev.downlink(command(1, note), T)) == fr.RESULT_OK
    assert dev.interval(T + vd.WARNED_FAST_S - 1) == vd.FAST_FIX_S
    assert dev.interval(T + vd.WARNED_FAST_S) == vd.FIX_S
