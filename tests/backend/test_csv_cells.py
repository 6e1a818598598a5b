"""CSV cells: no text cell a spreadsheet would run as a formula, and the original text back
from any escaped cell (the audit export is verified against it)."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from backend import csv_cells

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@given(st.text())
def test_any_text_round_trips_and_never_starts_a_formula(value: str) -> None:
    written = csv_cells.cell(value)
    assert not written.startswith(FORMULA_START)
    assert csv_cells.text(written) == value


@given(st.lists(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False))))
def test_a_written_row_reads_back_as_its_values(row: list[object]) -> None:
    buf = io.StringIO(newline="")
    csv_cells.Writer(buf).writerow(row)
    (cells,) = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    # Numbers stay numbers (-1 is a number to a spreadsheet, not a formula).
    texts = [c for c, v in zip(cells, row, strict=True) if isinstance(v, str)]
    assert [c for c in texts if c.startswith(FORMULA_START)] == []
    assert [
        csv_cells.text(c) if isinstance(v, str) else c for c, v in zip(cells, row, strict=True)
    ] == [v if isinstance(v, str) else str(v) for v in row]
