"""The fleet board and runner: the real firmware fed by the world (mostly without a broker;
the zone push goes through Mosquitto and the backend)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from typer.testing import CliRunner

import tagwatch_cli
from backend.broker import Mosquitto
from backend.storage.schema import frames
from firmware import frame as fr
from firmware import nmea as fw_nmea
from firmware import topics
from sim import fleet as fleet_module
from sim import scenario
from sim.fleet import Fleet, RunOptions, SubjectWorld
from sim.fleet_board import FleetBoard, MemFiles, mv_from_level
from sim.fleet_uplink import LoopbackUplink, SharedUplink
from sim.generate import Simulation, generate


def test_memfiles_behaves_like_the_firmware_files() -> None:
    f = MemFiles()
    f.append("s1", b"ab")
    f.append("s1", b"cd")
    assert f.read("s1") == b"abcd" and f.read("s1", 1, 2) == b"bc" and f.size("s1") == 4
    f.replace("state.json", b"{}")
    assert sorted(f.listdir()) == ["s1", "state.json"]
    f.remove("s1")
    assert f.size("s1") == -1
    try:
        f.read("s1")
    except OSError:
        pass
    else:
        raise AssertionError("reading a removed file must fail")


def test_a_dead_tags_flash_log_is_read_for_the_accounting() -> None:
    # A tag whose battery ran flat has no running firmware, but its flash still holds the
    # frames it sealed and the backend never acknowledged: the run counts them as on the tag.
    files = MemFiles()
    cfg = {"store_bytes": 65536, "seg_bytes": 4096}
    frames = [
        fr.encode(fr.Frame(fr.TAG_DATA, 7, 3, s, 1795737600 + s, [], 1), bytes(32))
        for s in range(5)
    ]
    running = fleet_module.flash_log(files, cfg)
    for f in frames:
        running.append(f)
    running.ack(3, 0, 1)
    del running  # power gone
    held = list(fleet_module.flash_log(files, cfg).pending_frames())
    assert [(b, s) for b, s, _ in held] == [(3, 2), (3, 3), (3, 4)]
    assert [d for _, _, d in held] == frames[2:]


def test_cell_voltage_follows_the_level() -> None:
    mv = [mv_from_level(x / 20) for x in range(21)]
    assert mv == sorted(mv) and mv[0] == 3300 and mv[-1] == 4200


def _edge_sim(subjects: int = 3) -> object:
    sc = scenario.load("edge-cases")
    from sim.fleet import with_subjects

    return generate(with_subjects(sc, subjects), seed=1, days=1)


def test_board_nmea_goes_through_the_firmware_parser_near_the_truth() -> None:
    sim = _edge_sim()
    w = SubjectWorld(sim, 0)  # type: ignore[arg-type]
    up = LoopbackUplink({1: bytes(32)})
    board = FleetBoard(1, w.view(), up, up.box(1), np.random.default_rng(3))
    # Noon: find a time the subject is out of doors (not at a place) so fixes are likely.
    t = next(t for t in range(w.t[0], w.t[-1], 60_000) if w.position(t)[3])
    board.boot(t, 0)
    board.gnss_power(True)
    board.sim_ms = t + 120_000
    data = board.gnss_read()
    assert data is not None and data.startswith(b"$GN")
    reader = fw_nmea.Reader()
    reader.feed(data)
    fixes = []
    fix = reader.take()
    while fix is not None:
        if fix.valid and fix.quality:
            fixes.append(fix)
        fix = reader.take()
    assert reader.bad() == 0
    assert fixes, "two minutes walking outdoors gave no fix"
    last = fixes[-1]
    x, y, _env, _ = w.position(last.unix() * 1000)
    lat, lon = sim.world.to_latlon(np.array([x]), np.array([y]))  # type: ignore[attr-defined]
    err = np.hypot((last.lat_e7 / 1e7 - lat[0]) * 111_000, (last.lon_e7 / 1e7 - lon[0]) * 70_000)
    assert err < 200  # the GNSS model's outliers reach 150 m near buildings


def _fleet_only(seed: int) -> dict[tuple[int, int, int], bytes]:
    sc = scenario.load("edge-cases")
    opts = RunOptions(seed=seed, subjects=4, days=1, backend=False, drain_s=1800)
    with Fleet(sc, opts) as f:
        r = f.run()
        sealed = {(d, b, s) for d, bs in r.sealed.items() for b, s in bs}
        # Fleet only: every frame is acknowledged at once, so every sealed frame went out.
        assert sealed == set(r.frames) and not r.pending
        strap = f.tags[3] if len(f.tags) > 3 else None
        assert strap is not None
        tampers = [
            rec
            for k, p in r.frames.items()
            if k[0] == strap.device
            for rec in fr.parse(p).records
            if rec.type == fr.TAMPER
        ]
        assert tampers, "edge-cases subject 3 cuts the strap on day 0"
        return r.frames


def test_fleet_only_run_is_deterministic_for_a_seed() -> None:
    a = _fleet_only(5)
    b = _fleet_only(5)
    assert a == b
    fixes = sum(1 for p in a.values() for r in fr.parse(p).records if r.type == fr.FIX)
    assert fixes > 50


class SlowWorld(SubjectWorld):
    """A subject's world that takes a while to build, as on a loaded machine or beside HIL
    tags starting: downlinks published during set-up arrive while it is being built."""

    def __init__(self, sim: Simulation, i: int) -> None:
        time.sleep(0.2)
        super().__init__(sim, i)


@pytest.mark.broker
def test_zones_pushed_at_the_start_reach_every_fleet_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner pushes each subject's exclusion zones (cmd_zone) when it sets up. The shared
    # client drops a downlink for a tag it has no box for, so however slow the set-up, the
    # push must come after the fleet tags exist; every tag then holds its zones and answered.
    from backend.zone_push import zone_records

    monkeypatch.setattr(fleet_module, "SubjectWorld", SlowWorld)
    sc = scenario.load("edge-cases")
    opts = RunOptions(seed=2, subjects=4, days=1, hours=0.25, drain_s=0, home_units=False)
    with Fleet(sc, opts) as f:
        r = f.run()
        assert isinstance(f.uplink, SharedUplink) and f.uplink.unknown == 0
        assert f.tags and f.backend is not None
        for sid, i in f.subject_of.items():
            tag = next(t for t in f.tags if t.index == i)
            with f.backend.engine.connect() as conn:
                want = [
                    [rec.slot, rec.lat_e7, rec.lon_e7, rec.radius_m]
                    for rec in zone_records(conn, sid)
                    if rec.radius_m
                ]
            assert want, f"subject {i} has no exclusion zone to push"
            assert tag.app is not None and sorted(tag.app.zones.zones) == sorted(want)
            results = [
                (rec.cmd_seq, rec.result)
                for k, p in r.frames.items()
                if k[0] == tag.device
                for rec in fr.parse(p).records
                if rec.type == fr.COMMAND_RESULT
            ]
            assert results and all(res == fr.RESULT_OK for _, res in results), results


def _frame(device: int, seq: int) -> bytes:
    f = fr.Frame(fr.TAG_DATA, device, 1, seq, 1_748_851_200, [], fr.FLAG_TIME_VALID)
    return fr.encode(f, bytes(32))


@pytest.mark.broker
def test_shared_uplink_refuses_while_down_and_never_sends_a_refused_frame_later(
    tmp_path: Path,
) -> None:
    # As a modem: a publish while the broker is gone fails, and the firmware keeps the frame.
    # paho would queue it and send it after reconnecting, behind the firmware's back (a
    # frame on the wire that the run's accounting never saw); it must not.
    from backend.broker import BrokerConfig, Mosquitto

    b = Mosquitto(BrokerConfig(persistence=False), workdir=tmp_path)
    b.start()
    up = SharedUplink([f"{b.host}:{b.port}"], "fleet", "")
    seen: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda _c, _u, m: seen.append(bytes(m.payload))
    try:
        up.start()
        topic = topics.tag_up(7)
        assert up.publish(7, topic, _frame(7, 0))
        b.kill()
        while up.client.is_connected():  # until paho has seen the connection go
            time.sleep(0.01)
        refused = _frame(7, 1)
        assert not up.publish(7, topic, refused) and up.refused == 1
        generation = up.generation
        b.start()
        watcher.connect(b.host, b.port)
        watcher.subscribe(topic, qos=1)
        watcher.loop_start()
        deadline = time.monotonic() + 60
        while up.generation == generation and time.monotonic() < deadline:
            time.sleep(0.01)
        assert up.generation > generation, "the uplink did not reconnect"
        last = _frame(7, 2)
        assert up.publish(7, topic, last)
        while last not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        # The refused frame was never sent. (The first may be: paho sends a QoS 1 publish
        # again when the broker died before its PUBACK, as a modem's session would.)
        assert last in seen and refused not in seen
    finally:
        watcher.loop_stop()
        up.stop()
        b.close()


@pytest.mark.broker
def test_shared_uplink_barrier_gives_up_once_nothing_comes_back(broker: Mosquitto) -> None:
    # A frame nobody answers (no ingest here, as for a frame in a killed worker's queue):
    # with quiet_s the barrier stops waiting when nothing has come back for that long,
    # instead of the whole timeout.
    up = SharedUplink([f"{broker.host}:{broker.port}"], "fleet", "")
    try:
        up.start()
        assert up.publish(7, topics.tag_up(7), _frame(7, 0))
        began = time.monotonic()
        assert not up.wait_acked(600, quiet_s=0.2)
        assert time.monotonic() - began < 300
        assert up.outstanding  # an ACK may still come and clear it
        # Given up on: the next slices do not wait for it again ...
        assert up.wait_acked(600, quiet_s=600)
        # ... but a frame sent after it is waited for, and a frame sent again too.
        assert up.publish(7, topics.tag_up(7), _frame(7, 1))
        assert not up.wait_acked(600, quiet_s=0.2)
        assert up.publish(7, topics.tag_up(7), _frame(7, 0))
        assert not up.wait_acked(600, quiet_s=0.2)
        assert len(up.outstanding) == 2
    finally:
        up.stop()


def test_sim_run_ha_hands_the_ha_options_to_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The command line's part of `tagwatch sim run --ha`; the run itself on the HA stack,
    # through the same sim.run.run, is the fault tests' (tests/e2e/test_failover.py).
    from sim import run as sim_run

    seen: list[tuple[str, RunOptions, Path]] = []

    def fake_run(sc: Any, opts: RunOptions, out: Path, *_a: Any, **_k: Any) -> Any:
        seen.append((sc.name, opts, out))
        return SimpleNamespace(paths={}, completeness=None)

    monkeypatch.setattr(sim_run, "run", fake_run)
    failover = Path(__file__).parents[1] / "e2e" / "failover.toml"
    args = ["sim", "run", str(failover), "--ha", "--hil", "1", "--from-hour", "9.3",
            "--hours", "0.25", "--out", str(tmp_path)]  # fmt: skip
    res = CliRunner().invoke(tagwatch_cli.app, args)
    assert res.exit_code == 0, res.output
    [(name, opts, out)] = seen
    assert name == "failover" and out == tmp_path
    assert opts.ha and opts.hil == 1 and opts.from_hour == 9.3 and opts.hours == 0.25
    plain = CliRunner().invoke(tagwatch_cli.app, [*args[:3], "--out", str(tmp_path)])
    assert plain.exit_code == 0 and not seen[1][1].ha


@pytest.mark.broker
@pytest.mark.micropython
def test_a_hil_tags_relayed_frames_are_stored_in_the_slice_it_offloaded_them() -> None:
    # A HIL tag ticks its own home unit; the runner then waits, as for the fleet's units,
    # until the backend has what the unit relayed: a tamper at home is stored when offloaded,
    # not whenever real time lets the relay catch up with the simulated clock.
    sc = scenario.load(Path(__file__).with_name("gate-evening.toml"))
    opts = RunOptions(seed=5, hil=1, from_hour=20, hours=1, drain_s=0, rules=False)
    with Fleet(sc, opts) as f:
        f.setup()
        h = f.hil[0]
        offloaded_at: dict[tuple[int, int, int], int] = {}
        turn = h.tag.run_until

        def run_until(t_ms: int, **kw: Any) -> None:
            n = len(h.tag.radio.offloaded)
            turn(t_ms, **kw)
            for p in h.tag.radio.offloaded[n:]:
                g = fr.parse(p)
                offloaded_at.setdefault((g.device, g.boot, g.seq), f.begin_ms + t_ms)

        h.tag.run_until = run_until
        f.run()
        with f.backend.engine.connect() as conn:
            stored = {
                (d, b, s): at
                for d, b, s, at, via in conn.execute(
                    select(
                        frames.c.device,
                        frames.c.boot,
                        frames.c.seq,
                        frames.c.received_at,
                        frames.c.via_unit,
                    ).where(frames.c.device == h.device)
                )
                if via is not None
            }
    assert offloaded_at and set(stored) <= set(offloaded_at)
    late = {k: stored[k] * 1000 - offloaded_at[k] for k in stored if k in offloaded_at}
    assert stored and all(d <= 0 for d in late.values()), late


def test_a_run_leaves_the_callers_logging_as_it_found_it(tmp_path: Path) -> None:
    """A run quiets the daemons' info lines while its progress bar shows, then gives the
    process its logging back: the web tests' day and the demo call it as a library, and a
    filter left behind silenced every later info line in the process (an ingest worker's
    report, its connect line)."""
    from rich.console import Console

    from sim import run as sim_run

    before = structlog.get_config()
    opts = RunOptions(seed=1, subjects=1, hours=0.25, backend=False, drain_s=60)
    outcome = sim_run.run(scenario.load("edge-cases"), opts, tmp_path, Console(quiet=True))
    outcome.close()
    assert outcome.result.frames  # the run ran
    assert structlog.get_config() == before
    with structlog.testing.capture_logs() as logs:
        structlog.get_logger().info("after the run")
    assert [e["event"] for e in logs] == ["after the run"]
