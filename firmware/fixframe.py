# The receivers' parse of a data frame (the backend's ingest): the codec's parse
# (firmware/frame.py) with its fixes picked out as value tuples, and a fast path for the frame
# a tag sends most, nothing but fixes (GPS mode).
#
# CPython only (struct.iter_unpack, slices with a step): the tag sends frames and never parses
# one of these, so it never imports this module and the freeze manifest does not list it.
#
# The fast path reads the fixes' values straight from struct.iter_unpack over the body, with no
# Record object per fix. Anything else about the frame (another record type, a fix with extra
# bytes from a newer version, a bad length, a value off the globe) sends it to frame.parse,
# which parses it or rejects it with its reason. So parse() accepts exactly what frame.parse
# accepts and yields the same header, bytes and values (tests/firmware/test_fixframe.py checks
# both paths on valid and corrupted frames): the validation rules stay frame.py's.
import struct

from firmware import frame as fr
from firmware.runtime import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Sequence

    # (frame, the values of its FIX records in wire order, those records' indexes)
    Parsed = tuple[fr.Frame, list[tuple[int, ...]], Sequence[int]]

_HEADER = struct.Struct(fr.HEADER_FMT)
_FIX_RECORD = struct.Struct(">2x" + fr.SPECS[fr.FIX][1][1:])  # record header, then the fix
_FIX_TYPES = bytes([fr.FIX]) * (fr.MAX_BODY // _FIX_RECORD.size + 1)
_FIX_LENGTHS = bytes([_FIX_RECORD.size - 2]) * len(_FIX_TYPES)
_DATA_TYPES = (fr.TAG_DATA, fr.HOME_DATA)


class FixFrame(fr.Frame):
    """A frame of nothing but fixes, read by the fast path. Its Record objects are made only
    if something asks for `records` (rule evaluation does, for devices assigned to a
    subject), by the codec itself from the same bytes."""

    _records: "list[fr.Record] | None" = None

    @property
    def records(self) -> "list[fr.Record]":
        if self._records is None:
            self._records = fr.parse(self.signed + self.mac).records
        return self._records

    @records.setter
    def records(self, value: "list[fr.Record]") -> None:
        self._records = value


def parse_fixes(data: bytes) -> "Parsed | None":
    """The fast path alone: the parse of a well-formed data frame whose records are all
    fixes; None for anything else. MAC unchecked, as with frame.parse."""
    if type(data) is not bytes or len(data) < fr.HEADER_LEN + fr.MAC_MIN:
        return None
    version, mtype, flags, mac_len, device, boot, seq, ts, body_len = _HEADER.unpack_from(data)
    end = fr.HEADER_LEN + body_len
    count, rest = divmod(body_len, _FIX_RECORD.size)
    if (
        version != fr.VERSION
        or mtype not in _DATA_TYPES
        or not fr.MAC_MIN <= mac_len <= fr.MAC_MAX
        or body_len > fr.MAX_BODY
        or end + mac_len != len(data)
        or rest
        or not count
    ):
        return None
    body = data[fr.HEADER_LEN : end]
    stride = _FIX_RECORD.size
    if body[0::stride] != _FIX_TYPES[:count] or body[1::stride] != _FIX_LENGTHS[:count]:
        return None
    fixes = list(_FIX_RECORD.iter_unpack(body))
    if not all(map(fr.fix_in_range, fixes)):
        return None  # the codec rejects it ("value")
    f = FixFrame(mtype, device, boot, seq, ts, (), flags, mac_len, version)
    f._records = None  # made from the bytes when asked for
    f.signed = data[:end]
    f.mac = data[end:]
    return f, fixes, range(count)


def parse(data: bytes) -> "Parsed":
    """frame.parse's frame (MAC unchecked; raises DecodeError and nothing else), with the
    values of its FIX records and their indexes; by the fast path where it applies."""
    fast = parse_fixes(data)
    if fast is not None:
        return fast
    f = fr.parse(data)
    fixes: list[tuple[int, ...]] = []
    idx: list[int] = []
    for i, rec in enumerate(f.records):
        if rec.type == fr.FIX:
            fixes.append(rec.values)
            idx.append(i)
    return f, fixes, idx
