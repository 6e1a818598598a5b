"""`tagwatch sim demo` end to end: MicroPython tag -> real Mosquitto -> verifying consumer."""

from __future__ import annotations

import pytest
from rich.console import Console

from firmware import frame as fr
from sim import demo


@pytest.mark.broker
@pytest.mark.micropython
def test_demo_delivers_verifies_and_acks_everything() -> None:
    out = demo.run(4, Console(quiet=True))
    assert [f.seq for f in out.accepted] == [0, 1, 2, 3]
    assert sorted(r for r, _ in out.rejected) == ["mac", "replay"]
    assert out.acks_verified == 4
    last = out.accepted[-1]
    assert last.flags & fr.FLAG_URGENT
    assert any(r.type == fr.TAMPER and r.state == fr.OPEN for r in last.records)
    fixes = [r for f in out.accepted for r in f.records if r.type == fr.FIX]
    assert len(fixes) == 20
    # Every fix is in the Bournemouth/Poole box the demo route walks.
    assert all(50.70 < r.lat_e7 / 1e7 < 50.73 and -2.0 < r.lon_e7 / 1e7 < -1.86 for r in fixes)
