# Store-and-forward log: ack frees, reboot recovery, overflow accounting, capacity, and a
# power cut at every write step (littlefs on a RAM block device under MicroPython; torn
# writes in a directory under CPython; see tests/firmware/flash.py).
import gc

from firmware import frame as fr
from firmware.state import State
from firmware.store import Store
from tests.firmware.flash import Flash, PowerCut

MICROPYTHON = True
# The power-cut test keeps the flash image of every write step; the 96k default left ~6 %
# to spare (measured): ~25 % above the need.
MICROPYTHON_HEAP = "112k"

KEY = bytes(range(32))


def sealed(boot, seq, fixes=1):
    recs = [
        fr.Record(fr.FIX, (i, 507161700 + seq, -18753500, 45, 2, 0, 9, 0, 0, 9))
        for i in range(fixes)
    ]
    return fr.encode(fr.Frame(fr.TAG_DATA, 7, boot, seq, 1795737600 + seq, recs, 1), KEY)


def open_store(files, **kw):
    return Store(files, State(files), **kw)


def contents(store):
    out = []
    p = store.first_pending()
    while p is not None:
        seq, n = p[1], p[2]
        out.append(store.read(n, seq))
        p = store.next_pending(n, store.index_of(n, seq))
    return out


def test_append_read_ack_free():
    fl = Flash()
    st = open_store(fl.files(), seg_entries=4)
    frames = [sealed(1, s) for s in range(10)]
    for f in frames:
        st.append(f)
    assert st.pending() == 10 and contents(st) == frames
    assert st.ack(1, 0, 5) == 6
    assert st.ack(1, 0, 5) == 0  # a replayed ACK changes nothing
    assert st.ack(2, 0, 100) == 0  # another boot's frames
    assert contents(st) == frames[6:]
    names = fl.files().listdir()
    assert "s00000000" not in names  # both full segments acked: freed from flash
    fl.close()


def test_reboot_recovers_pending_and_acks_byte_identical():
    fl = Flash()
    st = open_store(fl.files(), seg_entries=4)
    frames = [sealed(3, s) for s in range(9)]
    for f in frames:
        st.append(f)
    st.ack(3, 2, 4)
    again = open_store(fl.files(), seg_entries=4)
    assert contents(again) == frames[:2] + frames[5:]
    again.append(sealed(4, 0))  # the next boot starts a new segment
    assert again.pending() == 7
    fl.close()


def test_overflow_drops_oldest_and_counts_exactly():
    fl = Flash()
    files = fl.files()
    st = open_store(files, max_bytes=2000, seg_bytes=600, seg_entries=8)
    frames = [sealed(1, s, fixes=3) for s in range(30)]
    for f in frames:
        st.append(f)
    assert st.used_bytes() <= 2000
    kept = contents(st)
    lost = st.take_lost()
    assert lost == 30 - len(kept) and lost > 0
    assert kept == frames[30 - len(kept) :]  # the oldest went
    st.lost_reported(lost)
    assert st.take_lost() == 0 and st.state.int("lost_total") == lost
    fl.close()


def test_seven_days_of_fixes_fit_in_one_megabyte():
    # 10,080 one-a-minute fixes in 10-fix frames, never acknowledged (a week without
    # coverage), in a 1 MB flash: nothing may be dropped.
    fl = Flash(blocks=256, block_size=4096)
    st = open_store(fl.files())
    frame = sealed(1, 0, fixes=10)
    for seq in range(1008):
        f = bytearray(frame)
        f[10:14] = seq.to_bytes(4, "big")  # a distinct seq is all the store looks at
        st.append(bytes(f))
    assert st.pending() == 1008 and st.take_lost() == 0
    again = open_store(fl.files())
    assert again.pending() == 1008
    fl.close()


def _scenario(files, log):
    """Appends, acks and frees; `log` records what each completed call made durable."""
    st = open_store(files, seg_bytes=400, seg_entries=3, max_bytes=600)
    for seq in range(8):
        log.append(("append", seq))
        st.append(sealed(5, seq, fixes=2))
        log.append(("appended", seq))
        if seq == 4:
            log.append(("ack", (0, 3)))
            st.ack(5, 0, 3)
            log.append(("acked", (0, 3)))
    log.append(("ack", (5, 5)))
    st.ack(5, 5, 5)
    log.append(("acked", (5, 5)))


def test_power_cut_at_every_write_step():
    fl = Flash(blocks=64, block_size=512)
    files = fl.files()
    clean = fl.snapshot()
    before = fl.writes()
    _scenario(files, [])
    total = fl.writes() - before
    assert total > 10
    for cut in range(total):
        fl.restore(clean)
        files = fl.files()
        fl.cut_after(cut)
        log = []
        try:
            _scenario(files, log)
            raise AssertionError("power was not cut at step %d" % cut)
        except PowerCut:
            pass
        fl.cut_after(-1)
        w = fl.writes()
        gc.collect()  # the cut interrupted call left nothing open to write later (a finaliser)
        assert fl.writes() == w, "written after the power went at cut %d" % cut
        st = open_store(fl.files(), seg_bytes=400, seg_entries=3, max_bytes=600)
        got = contents(st)
        done = [x[1] for x in log if x[0] == "appended"]
        trying = [x[1] for x in log if x[0] == "append"]
        acked = []
        maybe = []
        for kind, rng in log:
            if kind in ("acked", "ack"):
                for s in range(rng[0], rng[1] + 1):
                    (acked if kind == "acked" else maybe).append(s)
        seqs = []
        for data in got:
            f = fr.decode(data, KEY)  # every recovered frame is whole and verifies
            seqs.append(f.seq)
            assert data == sealed(5, f.seq, fixes=2), "frame changed at cut %d" % cut
        assert len(seqs) == len(set(seqs)), "doubled at cut %d" % cut
        lost = st.take_lost()
        for s in done:
            if s not in acked and s not in maybe:
                assert s in seqs or lost > 0, "frame %d lost at cut %d" % (s, cut)
        for s in seqs:
            assert s in trying and s not in acked, "frame %d wrongly kept at cut %d" % (s, cut)
    fl.close()
