# Store-and-forward log: sealed frames appended to segment files on the flash filesystem, kept
# byte for byte until the backend's acknowledgement names them, then freed a whole segment at
# a time. Survives reboot and power loss at any write step:
#   - each entry is magic | length | CRC-32 | frame; recovery stops a segment at the first
#     entry that does not check out (a torn append) and never appends to it again;
#   - acknowledgements are appended to a per-segment ack file as (first, last) index pairs
#     (a torn pair is ignored: the frame is then sent again, and ingest is idempotent);
#   - dropping the oldest segment when full is recorded in the state file before the remove,
#     so the overflow count is exact and the drop completes after a cut.
# A segment holds frames of one boot with consecutive sequence numbers, so an entry's
# (boot, seq) is (segment boot, segment first + index) and the RAM index stays tiny.
import struct
from array import array
from binascii import crc32

from firmware.runtime import TYPE_CHECKING, const

if TYPE_CHECKING:
    from collections.abc import Iterator

    from firmware.files import Files
    from firmware.state import State

_MAGIC = const(0xA5)
_ENTRY_HEAD = const(7)  # magic, length (2), crc32 (4)


def _seg_name(n: int) -> str:
    return "s%08d" % n


def _ack_name(n: int) -> str:
    return "a%08d" % n


class Segment:
    def __init__(self, n: int, entries: int) -> None:
        self.n = n
        self.boot = -1
        self.first = -1
        self.offs = array("H")
        self.size = 0
        self.acked = bytearray((entries + 7) // 8)
        self.nacked = 0
        self.closed = False

    def count(self) -> int:
        return len(self.offs)

    def is_acked(self, i: int) -> bool:
        return bool(self.acked[i >> 3] & (1 << (i & 7)))

    def mark(self, lo: int, hi: int) -> int:
        new = 0
        for i in range(lo, hi + 1):
            if not self.is_acked(i):
                self.acked[i >> 3] |= 1 << (i & 7)
                new += 1
        self.nacked += new
        return new


class Store:
    def __init__(
        self,
        files: "Files",
        state: "State",
        max_bytes: int = 786432,
        seg_bytes: int = 16384,
        seg_entries: int = 64,
    ) -> None:
        self.files = files
        self.state = state
        self.max_bytes = max_bytes
        self.seg_bytes = seg_bytes
        self.seg_entries = seg_entries
        self.segs: list[Segment] = []
        self.next_n = 0
        self.recover()

    # -- recovery ---------------------------------------------------------------------------
    def recover(self) -> None:
        names = self.files.listdir()
        dropped = self.state.int("dropped_upto", -1)
        nums = []
        for name in names:
            if name.endswith(".tmp"):
                self.files.remove(name)
            elif name[0] == "s" and len(name) == 9:
                nums.append(int(name[1:]))
        nums.sort()
        for name in names:
            if name[0] == "a" and len(name) == 9 and int(name[1:]) not in nums:
                self.files.remove(name)  # its segment was freed just before a cut
        self.segs = []
        for n in nums:
            if n <= dropped:  # an overflow drop that a cut interrupted: finish it
                self._free(n)
                continue
            seg = self._scan(n)
            self.next_n = n + 1
            if seg.count() == 0 or seg.nacked == seg.count():
                self._free(n)
            else:
                self.segs.append(seg)
        if dropped >= self.next_n:
            self.next_n = dropped + 1

    def _scan(self, n: int) -> Segment:
        seg = Segment(n, self.seg_entries)
        seg.closed = True  # never append after a reboot: the tail may be torn
        name = _seg_name(n)
        total = self.files.size(name)
        off = 0
        while off + _ENTRY_HEAD <= total and seg.count() < self.seg_entries:
            head = self.files.read(name, off, _ENTRY_HEAD)
            if len(head) < _ENTRY_HEAD or head[0] != _MAGIC:
                break
            ln, crc = struct.unpack(">HI", head[1:])
            if off + _ENTRY_HEAD + ln > total or ln < 28:
                break
            data = self.files.read(name, off + _ENTRY_HEAD, ln)
            if crc32(data) & 0xFFFFFFFF != crc:
                break
            boot, seq = struct.unpack_from(">HI", data, 8)
            if seg.first < 0:
                seg.boot, seg.first = boot, seq
            elif boot != seg.boot or seq != seg.first + seg.count():
                break
            seg.offs.append(off)
            off += _ENTRY_HEAD + ln
        seg.size = total
        try:
            acks = self.files.read(_ack_name(n))
        except OSError:
            acks = b""
        for i in range(0, len(acks) - 1, 2):  # an odd last byte is a torn pair: ignored
            lo, hi = acks[i], acks[i + 1]
            if lo <= hi < seg.count():
                seg.mark(lo, hi)
        return seg

    # -- writing ----------------------------------------------------------------------------
    def used_bytes(self) -> int:
        t = 0
        for s in self.segs:
            t += s.size
        return t

    def append(self, data: bytes) -> None:
        """Store one sealed frame (its header gives boot and seq). Returns once it is durable;
        a power cut during the call leaves the log as it was or with this frame complete."""
        boot, seq = struct.unpack_from(">HI", data, 8)
        entry = struct.pack(">BHI", _MAGIC, len(data), crc32(data) & 0xFFFFFFFF) + data
        seg = self.segs[-1] if self.segs else None
        if (
            seg is None
            or seg.closed
            or seg.count() >= self.seg_entries
            or seg.size + len(entry) > self.seg_bytes
            or boot != seg.boot
            or seq != seg.first + seg.count()
        ):
            if seg is not None:
                seg.closed = True
                if seg.nacked == seg.count():
                    self._free(seg.n)
                    self.segs.pop()
            seg = Segment(self.next_n, self.seg_entries)
            seg.boot, seg.first = boot, seq
            self.next_n += 1
            self.segs.append(seg)
        while self.used_bytes() + len(entry) > self.max_bytes and len(self.segs) > 1:
            self._drop_oldest()
        self.files.append(_seg_name(seg.n), entry)
        seg.offs.append(seg.size)
        seg.size += len(entry)

    def _drop_oldest(self) -> None:
        old = self.segs[0]
        lost = old.count() - old.nacked
        st = self.state
        st.set("lost", st.int("lost") + lost, save=False)
        st.set("lost_total", st.int("lost_total") + lost, save=False)
        st.set("dropped_upto", old.n)  # saved before the remove: the drop completes after a cut
        self._free(old.n)
        self.segs.pop(0)

    def _free(self, n: int) -> None:
        self.files.remove(_seg_name(n))
        self.files.remove(_ack_name(n))

    def take_lost(self) -> int:
        """Frames lost to overflow not yet reported; the caller records an overflow event and
        then calls lost_reported() once that event is itself stored."""
        return self.state.int("lost")

    def lost_reported(self, count: int) -> None:
        self.state.set("lost", self.state.int("lost") - count)

    # -- acknowledgement --------------------------------------------------------------------
    def ack(self, boot: int, first: int, last: int) -> int:
        """Free frames (boot, first..last); returns how many were newly acknowledged."""
        freed = 0
        for seg in list(self.segs):
            c = seg.count()
            if seg.boot != boot or c == 0 or last < seg.first or first > seg.first + c - 1:
                continue
            lo = max(first, seg.first) - seg.first
            hi = min(last, seg.first + c - 1) - seg.first
            todo = False
            for i in range(lo, hi + 1):
                if not seg.is_acked(i):
                    todo = True
                    break
            if not todo:
                continue
            self.files.append(_ack_name(seg.n), bytes((lo, hi)))
            freed += seg.mark(lo, hi)
            if seg.closed and seg.nacked == c:
                self._free(seg.n)
                self.segs.remove(seg)
        return freed

    # -- reading ----------------------------------------------------------------------------
    def pending(self) -> int:
        t = 0
        for s in self.segs:
            t += s.count() - s.nacked
        return t

    def first_pending(self) -> "tuple[int, int, int] | None":
        """(boot, seq, segment n) of the oldest unacknowledged frame."""
        return self.next_pending(-1, -1)

    def next_pending(self, n: int, i: int) -> "tuple[int, int, int] | None":
        """The unacknowledged frame after position (segment n, index i), as (boot, seq, n)."""
        for seg in self.segs:
            if seg.n < n:
                continue
            start = i + 1 if seg.n == n else 0
            for j in range(start, seg.count()):
                if not seg.is_acked(j):
                    return seg.boot, seg.first + j, seg.n
        return None

    def pending_frames(self) -> "Iterator[tuple[int, int, bytes]]":
        """(boot, seq, sealed frame) of every unacknowledged frame, oldest first."""
        p = self.first_pending()
        while p is not None:
            boot, seq, n = p
            yield boot, seq, self.read(n, seq)
            p = self.next_pending(n, self.index_of(n, seq))

    def read(self, n: int, seq: int) -> bytes:
        for seg in self.segs:
            if seg.n == n:
                off = seg.offs[seq - seg.first]
                head = self.files.read(_seg_name(n), off, _ENTRY_HEAD)
                ln = struct.unpack(">H", head[1:3])[0]
                return self.files.read(_seg_name(n), off + _ENTRY_HEAD, ln)
        raise KeyError(n)

    def index_of(self, n: int, seq: int) -> int:
        for seg in self.segs:
            if seg.n == n:
                return seq - seg.first
        return -1
