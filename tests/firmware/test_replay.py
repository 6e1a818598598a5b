# Runs under CPython and MicroPython.
from firmware import replay as rp
from tests.firmware.mpcompat import raises

MICROPYTHON = True


def test_in_order_then_duplicates():
    g = rp.SequenceGuard(window=8)
    assert [g.accept(1, 0, s) for s in range(4)] == [rp.NEW] * 4
    assert g.accept(1, 0, 3) == rp.DUPLICATE
    assert g.accept(1, 0, 0) == rp.DUPLICATE
    assert g.highest(1) == (0, 3)


def test_reordered_frames_are_late_once():
    g = rp.SequenceGuard(window=8)
    g.accept(7, 2, 10)
    assert g.accept(7, 2, 8) == rp.LATE
    assert g.accept(7, 2, 8) == rp.DUPLICATE
    assert g.accept(7, 2, 9) == rp.LATE
    assert g.accept(7, 2, 2) == rp.STALE  # beyond the window: the store decides
    assert g.accept(7, 2, 11) == rp.NEW
    assert g.accept(7, 2, 8) == rp.DUPLICATE


def test_new_boot_resets_and_old_boot_is_stale():
    g = rp.SequenceGuard()
    g.accept(1, 4, 100)
    assert g.accept(1, 5, 0) == rp.NEW
    assert g.accept(1, 4, 101) == rp.STALE
    assert g.accept(1, 5, 0) == rp.DUPLICATE


def test_big_jump_clears_window():
    g = rp.SequenceGuard(window=4)
    g.accept(1, 0, 0)
    assert g.accept(1, 0, 1000) == rp.NEW
    assert g.accept(1, 0, 999) == rp.LATE
    assert g.accept(1, 0, 998) == rp.LATE
    assert g.accept(1, 0, 996) == rp.STALE


def test_devices_are_independent():
    g = rp.SequenceGuard()
    g.accept(1, 0, 5)
    assert g.check(2, 0, 5) == rp.NEW
    g.forget(1)
    assert g.check(1, 0, 5) == rp.NEW
    raises(ValueError, rp.SequenceGuard, 0)
