"""The SQLite offline queue: order, de-duplication, bounds with overflow accounting, freeing
by ACK ranges, and state that survives reopening."""

from __future__ import annotations

from pathlib import Path

from home_unit import store as st


def frames(device: int, seqs: range, boot: int = 1) -> list[tuple[int, int, int, bytes]]:
    return [(device, boot, s, b"frame %d" % s) for s in seqs]


def test_pragmas_are_durable(tmp_path: Path) -> None:
    s = st.Store(tmp_path / "q.db")
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_queue_order_dedupe_and_free(tmp_path: Path) -> None:
    s = st.Store(tmp_path / "q.db")
    assert s.enqueue(st.RELAY, frames(1001, range(1, 6)), 0, 100) == (5, 0, 0)
    assert s.enqueue(st.RELAY, frames(1001, range(3, 9)), 0, 100) == (3, 3, 0)
    assert [q.seq for q in s.pending(0, 100)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [q.seq for q in s.pending(s.pending(0, 3)[-1].id, 100)] == [4, 5, 6, 7, 8]
    freed = s.free(st.RELAY, 1001, [(1, 2, 4), (1, 7, 7), (2, 1, 9)])
    assert len(freed) == 4
    assert [q.seq for q in s.pending(0, 100)] == [1, 5, 6, 8]
    # an ACK for another device, or for own frames, frees nothing here
    assert s.free(st.RELAY, 1002, [(1, 1, 100)]) == []
    assert s.free(st.OWN, 1001, [(1, 1, 100)]) == []
    assert s.count(st.RELAY) == 4


def test_bounded_queue_refuses_and_counts_overflow(tmp_path: Path) -> None:
    s = st.Store(tmp_path / "q.db")
    assert s.enqueue(st.RELAY, frames(1001, range(1, 9)), 0, 5) == (5, 0, 3)
    assert s.overflow_unreported() == 3
    # at the bound, an already-queued frame is still recognised as a duplicate
    assert s.enqueue(st.RELAY, frames(1001, range(1, 3)), 0, 5) == (0, 2, 0)
    # own frames have their own bound
    assert s.enqueue(st.OWN, frames(5001, range(1, 3)), 0, 5) == (2, 0, 0)
    s.enqueue_overflow_report(5001, 1, 3, b"overflow", 0, reported=3)
    assert s.overflow_unreported() == 0
    assert s.count(st.OWN) == 3


def test_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    s = st.Store(path)
    assert s.next_boot() == 1
    s.enqueue(st.RELAY, frames(1001, range(1, 4)), 0, 100)
    s.save_beacon(1001, 41, 1, 123.5, -60)
    s.save_beacon(1001, 40, 1, 124.5, -61)  # the counter never goes back
    s.save_config(7, b"payload")
    s.add_downlink(1001, b"ack", 0, 10)
    s.close()
    s = st.Store(path)
    assert s.next_boot() == 2
    assert [q.seq for q in s.pending(0, 10)] == [1, 2, 3]
    t = s.tag_states()[1001]
    assert (t.counter, t.state, t.last_kept, t.rssi) == (41, 1, 124.5, -61)
    assert s.config() == (7, b"payload")
    assert [d for _, d in s.downlinks(1001)] == [b"ack"]


def test_downlinks_are_bounded_per_tag_oldest_dropped(tmp_path: Path) -> None:
    s = st.Store(tmp_path / "q.db")
    dropped = [s.add_downlink(1001, b"d%d" % i, 0, 3) for i in range(5)]
    s.add_downlink(1002, b"other", 0, 3)
    assert dropped == [0, 0, 0, 1, 1]
    assert [d for _, d in s.downlinks(1001)] == [b"d2", b"d3", b"d4"]
    ident = s.downlinks(1001)[0][0]
    s.drop_downlink(ident)
    assert [d for _, d in s.downlinks(1001)] == [b"d3", b"d4"]
    assert [d for _, d in s.downlinks(1002)] == [b"other"]


def test_remembered_acks_bounded_per_tag_marked_and_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    s = st.Store(path)
    expired = [s.remember_ack(1001, b"a%d" % i, [(1, i, i + 1), (2, 0, 0)], 0, 3) for i in range(4)]
    s.remember_ack(1002, b"other", [(1, 1, 9)], 0, 3)
    assert expired == [0, 0, 0, 1]
    acks = s.known_acks(1001)
    assert [a.data for a in acks] == [b"a1", b"a2", b"a3"]
    assert acks[0].ranges == ((1, 1, 2), (2, 0, 0)) and acks[0].writes == 0
    s.ack_written(acks[0].id)
    s.ack_written(acks[0].id)
    s.forget_acks([acks[1].id])
    s.close()
    s = st.Store(path)  # remembered across restarts
    acks = s.known_acks(1001)
    assert [(a.data, a.writes) for a in acks] == [(b"a1", 2), (b"a3", 0)]
    assert [a.data for a in s.known_acks(1002)] == [b"other"]
