"""The zone rule over many simulated wearers (fixed seeds; tests/backend/rules/zone_edge.py):
30-minute lingerers 20, 50 and 100 m outside a 150 m exclusion zone under the simulator's
urban-canyon error and under correlated multipath with optimistic reported accuracy; real
visits 50 m inside; pass-throughs; sparse fixes. Each rate is asserted against a bound
with a margin over what was measured on 1,600 wearers (docs/rules.md, "Zone edges: what
buffer to give": the figures quoted below, and version 1's before them); where the zone
rule has a target (false entries from lingerers 20 and 50 m out), the bound is that target
or tighter."""

from __future__ import annotations

import pytest

from tests.backend.rules.zone_edge import (
    FAST_S,
    MULTIPATH,
    SLOW_S,
    URBAN,
    WALK_MPS,
    Model,
    crossing,
    judge,
    linger,
    visit,
)

N = 300
SEED = 11


@pytest.mark.parametrize(
    ("outside_m", "model", "most"),
    [
        # The targets: at most 5 per 100 at 20 m, 1 per 100 at 50 m (urban canyon);
        # measured 1.8 and 0.3 per 100 (27.3 and 2.0 before).
        (20, URBAN, 0.04),
        (50, URBAN, 0.01),
        (100, URBAN, 0.005),
        # Multipath the receiver does not admit: measured 41.9 per 100 at 20 m (65.3
        # before): no rule tells a 25 m error that holds for a minute from a step inside, so
        # a zone drawn where such error is expected needs a wider buffer; at 50 m 0.2 per
        # 100 (2.9 before).
        (20, MULTIPATH, 0.5),
        (50, MULTIPATH, 0.015),
        (100, MULTIPATH, 0.005),
    ],
)
def test_lingering_outside_the_edge_rarely_raises_an_entry(
    outside_m: float, model: Model, most: float
) -> None:
    o = judge(linger(outside_m), model, N, SEED)
    assert o.rate <= most, f"{o.alerted} of {o.wearers} lingerers alerted"


def test_lingering_with_sparse_fixes() -> None:
    # One fix a minute (a tag not yet sampling fast: near a zone the tag's own zone watch
    # and the backend's CFG_FAST_UNTIL both raise it to every 15 s). Two stray fixes a
    # minute apart are all a visit needs, so the edge costs more: measured 6.4 and 1.9 per
    # 100 at 20 and 50 m (28.6 and 5.2 before).
    assert judge(linger(20, every=SLOW_S), URBAN, N, SEED).rate <= 0.1
    assert judge(linger(50, every=SLOW_S), URBAN, N, SEED).rate <= 0.04


@pytest.mark.parametrize("minutes", [2, 5])
def test_real_entries_50_m_inside_are_all_caught_within_two_minutes(minutes: float) -> None:
    # Every one of these wearers (the study's 1,600 2-minute visits: all but one, whose fixes
    # stayed within the error of the edge the whole visit).
    o = judge(visit(50, minutes), URBAN, N * 4 // minutes, SEED)
    assert o.alerted == o.wearers
    # Latency as the simulator scores it: from the entry plus the dwell to the confirming
    # fix (the tag uploads each fix inside a zone at once).
    assert o.p95_s() < 120, o.p95_s()


def test_real_entries_under_multipath_and_with_sparse_fixes() -> None:
    # Measured: 96.6 % of 2-minute and 100 % of 5-minute visits under multipath; with a fix
    # a minute 88.7 % and 99.7 % (a 2-minute visit 50 m inside is three or four fixes, and
    # one lost or thrown 100 m by multipath leaves too few).
    assert judge(visit(50, 2), MULTIPATH, N, SEED).rate >= 0.94
    assert judge(visit(50, 5), MULTIPATH, N, SEED).rate >= 0.99
    assert judge(visit(50, 2, SLOW_S), URBAN, N, SEED).rate >= 0.83
    assert judge(visit(50, 5, SLOW_S), URBAN, N, SEED).rate >= 0.97


def test_pass_throughs() -> None:
    # Walking straight through, a fix a minute: across the middle (230 s inside) nearly
    # always caught; along a 200 m chord (154 s inside, never deeper than 38 m) mostly.
    # Measured 99.6 % and 85.7 % (96.9 % and 65.3 % before), 96.4 % with fast fixes.
    assert judge(crossing(300, WALK_MPS, SLOW_S), URBAN, N, SEED).rate >= 0.98
    assert judge(crossing(200, WALK_MPS, SLOW_S), URBAN, N, SEED).rate >= 0.78
    assert judge(crossing(200, WALK_MPS, FAST_S), URBAN, N, SEED).rate >= 0.93
    # A bus across the middle is inside for 50 s, under the 60 s dwell: not an entry.
    # Measured 1.8 per 100 with fast fixes.
    assert judge(crossing(300, 6.0, FAST_S), URBAN, N, SEED).rate <= 0.04
