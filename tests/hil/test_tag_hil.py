"""The tag firmware under the real `micropython` binary on the simulator board, in lock-step
with sim/hil.py, through a real Mosquitto to a scripted backend that acknowledges."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.broker import Mosquitto
from firmware import frame as fr
from sim.hil import HilConfig, HilTag
from tests.hil.peer import ScriptedBackend

pytestmark = [pytest.mark.micropython, pytest.mark.broker]

MIN = 60_000
DEVICE = 31337
KEY = hashlib.sha256(b"tagwatch hil test key").digest()


@pytest.fixture
def backend(broker: Mosquitto) -> Iterator[ScriptedBackend]:
    b = ScriptedBackend(broker.host, broker.port, {DEVICE: KEY})
    yield b
    b.close()


def make_tag(broker: Mosquitto, tmp_path: Path, heap: str = "192k", **settings: int) -> HilTag:
    cfg = HilConfig(
        device=DEVICE,
        key=KEY,
        workdir=tmp_path,
        brokers=[f"{broker.host}:{broker.port}"],
        heap=heap,
        settings=dict(settings),
    )
    return HilTag(cfg)


def all_frames_once(tag: HilTag, backend: ScriptedBackend, boots: dict[int, int]) -> None:
    """Every frame each boot sealed reached the backend, none with different bytes twice."""
    want = {(DEVICE, b, s) for b, n in boots.items() for s in range(n)}
    assert set(backend.frames) == want
    assert backend.mismatched == [] and backend.rejected == 0


def test_cold_start_fix_batch_uplink_ack_frees(
    broker: Mosquitto, backend: ScriptedBackend, tmp_path: Path
) -> None:
    with make_tag(broker, tmp_path) as tag:
        tag.start()
        tag.run_until(25 * MIN, moving=True)
        rep = tag.report()
        fixes = backend.records("fix")
        first_frame, first_fix = fixes[0]
        # Cold start: no fix before the receiver's time to first fix (26 s model).
        assert first_frame.time_of(first_fix) - tag.cfg.t0_unix >= 20
        assert first_fix.lat_e7 == 507161700 and first_fix.acc_dm == 45
        per_frame = [sum(r.name == "fix" for r in f.records) for f in backend.decoded()]
        assert 10 in per_frame  # a batch of N fixes went up as one frame
        assert rep["pending"] == 0  # the ACKs freed the flash log
        all_frames_once(tag, backend, {rep["boot"]: rep["seq"]})
        assert tag.modem.state == 0  # nothing owed: the modem is off
        tag.stop()


def test_strap_cut_recorded_within_5s_sent_within_30s(
    broker: Mosquitto, backend: ScriptedBackend, tmp_path: Path
) -> None:
    cut = 7 * MIN + 4321
    with make_tag(broker, tmp_path) as tag:
        tag.start()
        tag.run_until(9 * MIN, events=[(cut, lambda t: t.set_sensor("strap", 1))])
        tamper = backend.records("tamper")
        assert len(tamper) == 1
        f, r = tamper[0]
        assert r.sensor == fr.SENSOR_STRAP and r.state == fr.OPEN
        assert f.flags & fr.FLAG_URGENT
        assert f.time_of(r) - (tag.cfg.t0_unix + cut // 1000) <= 5
        sent_at = min(t for t, _topic, p in tag.modem.published if fr.parse(p).seq == f.seq)
        assert sent_at - cut <= 30_000
        assert tag.report()["latched"] == [True, False]
        tag.stop()


def test_coverage_loss_and_recovery_nothing_lost_or_doubled(
    broker: Mosquitto, backend: ScriptedBackend, tmp_path: Path
) -> None:
    with make_tag(broker, tmp_path) as tag:
        tag.start()
        tag.run_until(20 * MIN, moving=True)
        before = len(backend.frames)
        tag.set_coverage(False)
        tag.run_until(80 * MIN, moving=True)
        assert len(backend.frames) == before  # nothing got through without coverage
        rep = tag.report()
        assert rep["pending"] >= 4
        # The flash log holds every frame sealed and not received (and, at most, ones received
        # whose ACK has not come back yet), each as signed.
        held = [fr.decode(p, KEY) for p in tag.pending_frames()]
        assert len(held) == rep["pending"]
        sealed = {(rep["boot"], s) for s in range(rep["seq"])}
        unsent = {k for k in sealed if (DEVICE, *k) not in backend.frames}
        assert unsent and unsent <= {(f.boot, f.seq) for f in held} <= sealed
        tag.set_coverage(True)
        tag.run_until(120 * MIN, moving=True)
        rep = tag.report()
        assert rep["pending"] == 0
        all_frames_once(tag, backend, {rep["boot"]: rep["seq"]})
        tag.stop()


def test_reboot_with_a_full_buffer(
    broker: Mosquitto, backend: ScriptedBackend, tmp_path: Path
) -> None:
    small = {"batch_fixes": 2, "store_bytes": 3072, "seg_bytes": 1024}
    with make_tag(broker, tmp_path, **small) as tag:
        tag.set_coverage(False)
        tag.start()
        tag.run_until(100 * MIN, moving=True)
        rep1 = tag.report()
        assert rep1["lost_total"] > 0  # the flash log overflowed
        tag.kill()  # power cut with a full buffer
        tag.set_coverage(True)
        tag.start()
        tag.run_until(130 * MIN, moving=True)
        rep2 = tag.report()
        assert rep2["boot"] == rep1["boot"] + 1 and rep2["pending"] == 0
        lost = sum(r.lost for _f, r in backend.records("overflow"))
        assert lost == rep1["lost_total"] == rep2["lost_total"]
        old = {s for d, b, s in backend.frames if b == rep1["boot"]}
        # What survived is the newest part of boot 1, contiguous up to its last frame...
        assert old == set(range(rep1["seq"] - len(old), rep1["seq"]))
        # ...and the overflow record accounts for every older frame that boot sealed.
        assert len(old) + lost == rep1["seq"]
        new = {s for d, b, s in backend.frames if b == rep2["boot"]}
        assert new == set(range(rep2["seq"]))
        assert backend.mismatched == []
        tag.stop()


def test_a_long_backlog_is_read_out_of_a_device_sized_heap(
    broker: Mosquitto, backend: ScriptedBackend, tmp_path: Path
) -> None:
    # The simulator reads a tag's unacknowledged frames at the end of a run (completeness):
    # hours without coverage leave a backlog far larger than what is free in a 64 KB heap
    # late in a day, so the board writes it out a frame at a time.
    with make_tag(broker, tmp_path, heap="64wk") as tag:
        tag.start()
        tag.set_coverage(False)
        tag.run_until(6 * 60 * MIN, moving=True)
        rep = tag.report()
        assert rep["pending"] >= 30
        held = tag.pending_frames()
        assert len(held) == rep["pending"] and b"MemoryError" not in tag.stderr
        assert {fr.decode(p, KEY).seq for p in held} == set(range(rep["seq"]))
        tag.stop()


def test_stepped_in_slices_wake_only_the_firmware_runs_as_in_one_step(tmp_path: Path) -> None:
    # The fleet steps a HIL tag in 5-s slices (sim.fleet). With wake_only the slices'
    # ends are no turns of their own: the firmware is polled exactly when it asks and at its
    # inputs, as in one run_until over the whole time, so it seals the same bytes. Without,
    # every slice's end is one more poll, which moves the firmware's timers (its frames
    # differ). No broker answers (port 1): the sessions fail at once, deterministically,
    # and every frame stays in the flash log to compare.
    end = 40 * MIN
    t0 = 1_795_737_600

    def route(unix: int) -> tuple[int, int]:
        return 507161700 + (unix - t0) * 37, -18753500 + (unix - t0) * 23

    def at(ms: int, name: str, value: int) -> tuple[int, Any]:
        return ms, lambda t: t.set_sensor(name, value)

    # Off the slices' grid: an event at a slice's first instant is taken 1 ms later.
    events = [at(ms, "motion", 1) for ms in range(61_234, 30 * MIN, 20_000)]
    events += [at(17 * MIN + 2_345, "strap", 1), at(23 * MIN + 3_456, "strap", 0)]
    events += [at(31 * MIN + 1_111, "charger", 3)]
    events.sort(key=lambda e: e[0])
    runs = {}
    ways = (("one", end, True), ("wake", 5000, True), ("each", 5000, False))
    for name, slice_ms, wake_only in ways:
        cfg = HilConfig(
            device=DEVICE,
            key=KEY,
            workdir=tmp_path / name,
            brokers=["127.0.0.1:1"],
            heap="192k",
            t0_unix=t0,
        )
        with HilTag(cfg, route) as tag:
            tag.start()
            for t in range(slice_ms, end + 1, slice_ms):
                due = [e for e in events if t - slice_ms < e[0] <= t]
                tag.run_until(t, events=due, wake_only=wake_only)
            runs[name] = (tag.pending_frames(), tag.report())
    (one, one_rep), (wake, wake_rep), (each, each_rep) = runs["one"], runs["wake"], runs["each"]
    kinds = {r.name for f in one for r in fr.parse(f).records}
    assert {"fix", "tamper"} <= kinds
    assert wake == one
    assert wake_rep["polls"] == one_rep["polls"]
    assert each != one
    assert each_rep["polls"] > one_rep["polls"] + 0.8 * end / 5000
