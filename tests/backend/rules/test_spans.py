"""Span arithmetic (schedule.merge, schedule.subtract) against the seconds the spans hold.

Curfew windows minus excused absences, a report's monitored time minus home stays, and an
investigation's gaps in the evidence all use these two functions; the model here is the set
of whole seconds each half-open span covers."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from backend.rules.schedule import merge, subtract

Span = tuple[int, int]

spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=12)


def seconds(items: list[Span]) -> set[int]:
    return {t for a, b in items for t in range(a, b)}


def is_canonical(items: list[Span]) -> bool:
    """Sorted, non-empty, and apart (touching spans would have been joined)."""
    return all(a < b for a, b in items) and all(
        b < c for (_, b), (c, _) in itertools.pairwise(items)
    )


@given(spans)
def test_merge_covers_the_same_seconds_in_canonical_form(items: list[Span]) -> None:
    out = merge(items)
    assert seconds(out) == seconds(items)
    assert is_canonical(out)


@given(spans, spans)
def test_subtract_leaves_each_intervals_uncovered_seconds_in_order(
    intervals: list[Span], holes: list[Span]
) -> None:
    out = subtract(intervals, holes)
    cut = seconds(holes)
    expected = [merge([(t, t + 1) for t in range(a, b) if t not in cut]) for a, b in intervals]
    assert out == [p for parts in expected for p in parts]


def test_a_hole_touching_an_interval_removes_nothing_and_one_inside_splits_it() -> None:
    assert subtract([(10, 20)], [(0, 10), (20, 30)]) == [(10, 20)]
    assert subtract([(10, 20)], [(14, 16), (12, 15)]) == [(10, 12), (16, 20)]
    assert subtract([(10, 20), (0, 5)], [(0, 100)]) == []
