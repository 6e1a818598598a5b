"""The bleak radio, through bleak 3.1.0's real BleakScanner and BleakClient with backends
built on bleak's own backend interface (tests/home_unit/ble_backends.py)."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from pathlib import Path

import pytest
import structlog

from firmware import beacon as bc
from firmware import frame as fr
from home_unit import ble_radio as ble
from home_unit import pushed_config, store
from home_unit.clock import SimClock
from home_unit.daemon import HomeUnit
from home_unit.radio import BeaconHeard, RadioError
from home_unit.settings import HomeUnitSettings
from tests.home_unit.ble_backends import GattTag, NoBusScanner, ScriptedScanner, TagGattClient
from tests.home_unit.scripted_tag import T0, ScriptedTag, device_key

UNIT = 5001
UNIT_KEY = device_key(UNIT)


def test_written_against_the_pinned_bleak() -> None:
    assert version("bleak") == "3.1.0"


def radio() -> ble.BleakRadio:
    return ble.BleakRadio(
        SimClock(T0), scanner_backend=ScriptedScanner, client_backend=TagGattClient
    )


def test_scan_picks_our_manufacturer_data_and_rssi() -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)

    async def scenario() -> list[BeaconHeard]:
        heard: list[BeaconHeard] = []
        r = radio()
        await r.start(heard.append)
        scanner = ScriptedScanner.instances[-1]
        payload = tag.beacon_payload()
        scanner.advertise("AA:BB:CC:00:10:01", bc.advertisement(payload, b"tw"), -63)
        # someone else's beacon: another company id
        other = bytes((2, 1, 6, 7, 0xFF, 0x4C, 0x00, 1, 2, 3, 4))
        scanner.advertise("AA:BB:CC:00:99:99", other, -40)
        await r.stop()
        scanner.advertise("AA:BB:CC:00:10:01", bc.advertisement(tag.beacon_payload()), -63)
        assert heard[0].payload == payload
        return heard

    heard = asyncio.run(scenario())
    assert [(h.address, h.rssi, h.time) for h in heard] == [("AA:BB:CC:00:10:01", -63, T0)]
    assert bc.decode_beacon(heard[0].payload, tag.bkey).counter == 1


def test_gatt_ack_offload_and_downlink_with_multi_chunk_frames() -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    small = tag.make_frames(2)
    big_rec = [fr.Record(fr.FIX, (i, 1, 1, 1, 2, 1, 0, 0, 0, 9)) for i in range(60)]
    with tag.lock:
        tag.seq += 1
        big = fr.encode(fr.Frame(fr.TAG_DATA, 1001, 1, tag.seq, T0, big_rec), tag.key)
        tag.pending[(1, tag.seq)] = big
    assert len(big) > 2 * ble.CHUNK
    address = "AA:BB:CC:00:10:01"
    TagGattClient.tags[address] = gatt = GattTag(tag)
    beacon = tag.beacon_payload()
    ack = bc.encode_home_ack(bc.HomeAck(UNIT, 1001, T0, 120, 1, bc.ACK_OFFLOAD_READY), tag.pkey)
    ack_frame = fr.Frame(
        fr.ACK, 1001, 0, 0, T0, [fr.Record(fr.ACK_RANGE, boot=1, first=1, last=3)] * 60
    )
    downlink = fr.encode(ack_frame, tag.key)
    assert len(downlink) > ble.CHUNK
    assert beacon

    async def scenario() -> list[bytes]:
        r = radio()
        async with r.contact(address) as link:
            await link.send_ack(ack)
            frames = await link.receive_offload()
            await link.deliver_downlink(downlink)
        return frames

    frames = asyncio.run(scenario())
    assert frames == [*small, big]
    assert gatt.connections == 1
    assert [a.echo for a in tag.acks] == [1]
    assert tag.freed == [(1, 1), (1, 2), (1, 3)] and tag.pending_count() == 0


def test_unreachable_tag_and_lost_link_raise_radio_errors() -> None:
    tag = ScriptedTag(1002, UNIT, UNIT_KEY)
    tag.make_frames(1)
    TagGattClient.tags["AA:BB:CC:00:10:02"] = GattTag(tag)

    async def scenario() -> list[str]:
        reasons = []
        r = radio()
        for address in ("AA:BB:CC:00:77:77", "AA:BB:CC:00:10:02"):
            try:
                async with r.contact(address) as link:
                    tag.in_range = False  # walks out mid-contact
                    await link.receive_offload()
            except RadioError as e:
                reasons.append(e.reason)
        return reasons

    assert asyncio.run(scenario()) == ["connect", "gatt_read"]


def test_chunks_round_trip() -> None:
    for n in (0, 1, ble.CHUNK - 1, ble.CHUNK, ble.CHUNK + 1, 3 * ble.CHUNK + 7):
        data = bytes(range(256)) * (n // 256 + 1)
        data = data[:n]
        parts = ble.chunks(data)
        assert all(len(p) <= 512 for p in parts)
        assert [p[0] & ble.FINAL for p in parts] == [0] * (len(parts) - 1) + [ble.FINAL]
        assert b"".join(p[1:] for p in parts) == data


def test_home_unit_over_bleak_acknowledges_and_queues_the_offload(tmp_path: Path) -> None:
    """The daemon's beacon pipeline driven through the bleak radio: a verified beacon at good
    RSSI is acknowledged over GATT, the offload lands in the queue, the tag enters nothing
    it should not; a weak beacon gets no acknowledgement."""
    tag = ScriptedTag(1003, UNIT, UNIT_KEY)
    frames = tag.make_frames(3)
    address = "AA:BB:CC:00:10:03"
    TagGattClient.tags[address] = GattTag(tag)
    settings = HomeUnitSettings(unit=UNIT, key_hex=UNIT_KEY.hex(), state_db=tmp_path / "s.db")
    clock = SimClock(T0)
    unit = HomeUnit(
        settings,
        ble.BleakRadio(clock, scanner_backend=ScriptedScanner, client_backend=TagGattClient),
        clock,
    )
    doc = {
        "unit": UNIT, "version": 1, "issued": T0,
        "tags": [{"tag": tag.tag, "beacon_key": tag.bkey.hex()}],
    }  # fmt: skip
    unit.on_config(pushed_config.sign(doc, UNIT_KEY))

    async def scenario() -> None:
        await unit.radio.start(unit.on_beacon)
        scanner = ScriptedScanner.instances[-1]
        scanner.advertise(address, tag.advertisement(), -95)  # too weak to be home
        scanner.advertise(address, tag.advertisement(), -60)  # smoothed -77.5: not yet
        scanner.advertise(address, tag.advertisement(), -60)  # smoothed -68.75: home
        while unit.contacts.tasks:
            await asyncio.gather(*unit.contacts.tasks)
        await unit.radio.stop()

    asyncio.run(scenario())
    assert [a.echo for a in tag.acks] == [3]
    assert tag.acks[0].flags & bc.ACK_OFFLOAD_READY
    assert [q.data for q in unit.store.pending(0, 10) if q.kind == store.RELAY] == frames
    assert unit.counters["beacons_accepted"] == 3
    unit.store.close()


@pytest.fixture(autouse=True)
def _clean_backends() -> None:
    ScriptedScanner.instances.clear()
    TagGattClient.tags.clear()


def test_a_host_without_bluez_is_a_radio_error_and_the_daemon_says_so(tmp_path: Path) -> None:
    # No traceback from the daemon: one line, exit 1 so the service manager restarts it, and
    # the unit's store closed behind it.
    from typer.testing import CliRunner

    from home_unit import cli

    with pytest.raises(RadioError) as err:
        asyncio.run(ble.BleakRadio(SimClock(T0), scanner_backend=NoBusScanner).start(print))
    assert err.value.reason == "start"

    config = tmp_path / "unit.toml"
    state = tmp_path / "state.db"
    config.write_text(
        f'unit = {UNIT}\nkey_hex = "{UNIT_KEY.hex()}"\nstate_db = "{state}"\n'
        'broker_port = 1\nradio = "ble"\nlog_format = "json"\n'
    )
    radios: list[ble.BleakRadio] = []
    closed: list[store.Store] = []
    close = store.Store.close

    def failing(s: HomeUnitSettings, clock: SimClock) -> ble.BleakRadio:
        radios.append(ble.BleakRadio(clock, scanner_backend=NoBusScanner))
        return radios[-1]

    def closing(st: store.Store) -> None:
        closed.append(st)
        close(st)

    logging = structlog.get_config()  # `run` points structlog at the runner's stderr
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cli, "build_radio", failing)
            mp.setattr(store.Store, "close", closing)
            result = CliRunner().invoke(cli.app, ["run", "--config", str(config)])
    finally:
        structlog.configure(**logging)
    assert result.exit_code == 1, result.output
    assert radios, "the daemon did not build its radio"
    shown = " ".join(result.output.split())
    assert "tagwatch home-unit: the ble radio failed: start: cannot reach BlueZ over D-Bus" in shown
    assert "Traceback" not in result.output
    assert len(closed) == 1  # the daemon closed its store behind it
