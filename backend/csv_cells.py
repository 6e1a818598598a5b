"""CSV cells a spreadsheet shows as text, never runs: the one rule every CSV the backend
writes (evidence exports, reports, the audit log) applies to its text cells.

A text cell beginning with `=`, `+`, `-`, `@`, tab or CR is a formula to a spreadsheet (CSV
injection, e.g. a username `=cmd|' /C calc'!A0`); one beginning with an apostrophe would lose
it, since spreadsheets treat a leading apostrophe as "show as text". Either kind gets one
more leading apostrophe: the spreadsheet shows the original text, and `text` gives it back
exactly (the audit export is re-verified against its original values). Numbers are written
as numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

QUOTE = "'"
_ESCAPED = ("=", "+", "-", "@", "\t", "\r", QUOTE)


def cell(value: Any) -> Any:
    """What to write for `value`: text escaped as above, anything else as it is."""
    if isinstance(value, str) and value.startswith(_ESCAPED):
        return QUOTE + value
    return value


def text(written: str) -> str:
    """The original text of a cell `cell` wrote."""
    return written[1:] if written.startswith(QUOTE) else written


class Writer:
    """`csv.writer` (same formatting options) that escapes every text cell it writes."""

    def __init__(self, out: IO[str], **fmt: Any) -> None:
        self._writer = csv.writer(out, **fmt)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([cell(v) for v in row])


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    """A CSV file (CRLF line ends, as RFC 4180): a header of `columns`, then each row's
    values in that order, an absent or None value as an empty cell."""
    buf = io.StringIO()
    w = Writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue().encode()
