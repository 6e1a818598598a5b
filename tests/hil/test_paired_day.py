"""A whole simulated day of a tag PAIRED with a home unit, in the device's heap budget: out
10 h moving (out of the unit's range, uplinking over the modem), then 14 h at home in RF mode.
The firmware runs under the real micropython binary at `-X heapsize=64wk` (tests/hil/
test_tag_day.py explains the scaling) on the simulator board, lock-step (sim/hil.py); the
real home unit daemon with the simulator radio answers its beacons with signed acks, takes
its frames and relays them through a real Mosquitto to a backend stand-in that verifies them
and answers with signed ACKs, which come back to the tag through the unit. A paired tag loads
the RF-mode code beside everything an unpaired one loads: this is the firmware's largest day.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backend.broker import Mosquitto
from firmware import beacon as bc
from firmware import frame as fr
from firmware import topics
from home_unit.sim_radio_peer import SimRadioPeer
from sim.hil import HilConfig, HilTag
from tests.hil.peer import ScriptedBackend
from tests.home_unit.backend_standin import BackendStandIn
from tests.home_unit.harness import ThreadUnit, settings_dict

pytestmark = [pytest.mark.micropython, pytest.mark.broker]

MIN = 60_000
HOUR = 3_600_000
TAG = 2025
UNIT = 52025
TAG_KEY = hashlib.sha256(b"tagwatch paired day tag").digest()
UNIT_KEY = hashlib.sha256(b"tagwatch paired day unit").digest()
HOME = (507161700, -18753500)  # where the default HIL route stands: the home
HEAP = "64wk"  # 64 KiB scaled for the word size (tests/hil/test_tag_day.py)
HEAP_BYTES = 64 * 1024 * (2 if sys.maxsize > 2**32 else 1)
DATA_BUDGET = 16 * 1024  # the application's data above the loaded code, as for the unpaired day
LEASE_S = 300


def unit_config() -> dict[str, Any]:
    return {
        "unit": UNIT,
        "version": 1,
        "issued": 1_795_737_600,
        "tags": [{"tag": TAG, "beacon_key": bc.beacon_key(TAG_KEY).hex()}],
        "curfews": [],
        "thresholds": {"enter_dbm": -75, "exit_dbm": -85, "away_timeout_s": 300,
                       "lease_s": LEASE_S, "smoothing": 1.0},
    }  # fmt: skip


def wait_for(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_paired_day_small_heap(broker: Mosquitto, tmp_path: Path) -> None:
    # Ingest stand-ins: BackendStandIn takes the unit's relay and own frames (and records the
    # tag's direct uplinks too); ScriptedBackend answers the tag's direct uplinks on its down
    # topic (BackendStandIn answers an "up" channel as a home unit's).
    backend = BackendStandIn(broker, {TAG: TAG_KEY, UNIT: UNIT_KEY}).start()
    backend.publish_config(UNIT, unit_config())
    direct = ScriptedBackend(broker.host, broker.port, {TAG: TAG_KEY})
    settings = {
        "home_unit": UNIT,
        "pairing_key": bc.pairing_key(UNIT_KEY, TAG).hex(),
        "home_lat_e7": HOME[0],
        "home_lon_e7": HOME[1],
        "home_acc_dm": 150,  # RF-home fixes at the fix-at-rest interval
    }
    cfg = HilConfig(
        device=TAG,
        key=TAG_KEY,
        workdir=tmp_path,
        brokers=[f"{broker.host}:{broker.port}"],
        heap=HEAP,
        settings=settings,
        reply_wait_s=0.3,
        start_ticks=(1 << 30) - 15 * HOUR,  # the tick counter wraps while the tag is home
    )
    tag = HilTag(cfg)
    peer = SimRadioPeer(tag.tag_side()).start()
    tag.attach_home(peer, UNIT)  # out of range until set_rssi
    unit = ThreadUnit(
        settings_dict(UNIT, UNIT_KEY, tmp_path / "unit.db", broker, peer, clock="sim")
    ).start()
    try:
        assert peer.wait_unit(UNIT)
        wait_for(lambda: bool(unit.unit.subscribed_tags), "home unit ready")
        tag.start()
        # Out of range the unit hears nothing; its clock need only follow by the minute (a
        # lock-step tick each turn would cost more real time than the tag's own turns).
        tag.radio.unit_tick_ms = MIN
        # Out for 10 h, moving, out of the unit's range: GPS mode, uplink over the modem. The
        # last half hour is in a coverage gap, so frames wait in flash for the home unit.
        tag.run_until(9 * HOUR + 30 * MIN, moving=True)
        out = tag.report()
        assert out["mode"] == fr.MODE_GPS and out["rf"]["acks"] == 0
        assert out["rf"]["beacons"] > 2000  # beaconing every 15 s: arrival is noticed
        tag.set_coverage(False)
        tag.run_until(10 * HOUR, moving=True)
        waiting = tag.report()["pending"]
        assert waiting >= 2
        # Home: the unit hears the beacons and acknowledges them; RF mode for 14 h.
        tag.set_rssi(-60)
        tag.radio.unit_tick_ms = 1000
        tag.run_until(10 * HOUR + 2 * MIN)
        home = tag.report()
        assert home["mode"] == fr.MODE_RF
        tag.set_coverage(True)  # the modem stays off in RF mode: nothing goes that way
        published = len(tag.modem.published)
        tag.run_until(24 * HOUR)
        rep = tag.report()
        deadline = time.monotonic() + 20
        while rep["pending"] and time.monotonic() < deadline:  # the last ACK's contact
            tag.run_until(tag.now_ms + 30_000)
            rep = tag.report()
        tag.stop()
        assert tag.proc is None and b"MemoryError" not in tag.stderr, tag.stderr.decode()
    finally:
        tag.kill()
        unit.stop()
        direct.close()
        backend.close()
        peer.close()
    data = rep["heap_peak"] - rep["heap_code"]
    print(
        f"\npaired day: heap high-water {rep['heap_peak']} B live after a collection "
        f"(loaded code {rep['heap_code']} B + data {data} B) at -X heapsize={HEAP} "
        f"({HEAP_BYTES} B on this host); beacons {rep['rf']['beacons']}, "
        f"acks {rep['rf']['acks']}, contacts {rep['rf']['contacts']}, frames {rep['seq']}"
    )
    assert rep["heap_peak"] < HEAP_BYTES
    assert 0 < data < DATA_BUDGET
    # RF mode all the time at home: entered once, never left, GNSS and modem off.
    assert rep["mode"] == fr.MODE_RF and rep["rf"]["refused"] == {}
    assert rep["rf"]["acks"] >= 14 * 120 * 9 // 10  # a beacon each 30 s, nearly all answered
    assert not tag.gnss_on and not tag.modem.on and len(tag.modem.published) == published
    # Everything delivered once, by one path or the other, and freed on the backend's ACKs.
    assert rep["pending"] == 0 and rep["lost_total"] == 0
    frames = backend.tag_frames(TAG)
    assert set(frames) == {(rep["boot"], s) for s in range(rep["seq"])}
    assert backend.rejected == [] and direct.mismatched == []
    with backend.lock:
        arrivals = [(ch, b, s) for ch, d, b, s in backend.arrivals if d == TAG]
    relayed = {(b, s) for ch, b, s in arrivals if ch == "relay"}
    uplinked = {(b, s) for ch, b, s in arrivals if ch != "relay"}
    assert len(relayed) >= waiting + 14  # the gap's frames, then at least one an hour
    assert relayed | uplinked == set(frames)
    modes = [
        (r.mode, r.reason, r.home_unit)
        for _k, d in sorted(frames.items())
        for r in fr.parse(d).records
        if r.type == fr.MODE
    ]
    assert modes == [(fr.MODE_GPS, fr.MODE_REASON_BOOT, 0), (fr.MODE_RF, 1, UNIT)]
    assert any(t == topics.tag_up(TAG) for _ms, t, _p in tag.modem.published)
    assert 500 <= rep["fixes"] <= 640  # ~one a minute for 10 h (GNSS fixes only)
