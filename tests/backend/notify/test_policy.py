"""Who is paged and when, as pure decisions: the policy for an alert, quiet hours across
midnight and the clock changes, the on-call order, back-off; and the bounds a supervisor's
rota and policy input is held to."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from backend.notify import policy as pol
from backend.services.errors import Invalid
from backend.services.oncall import check_url

LONDON = ZoneInfo("Europe/London")


def _p(
    alert_type: str = "*", min_severity: str = "high", quiet: tuple[str, str] | None = None
) -> pol.Policy:
    return pol.Policy(
        1, 1, alert_type, min_severity, 300, 1800, quiet[0] if quiet else None,
        quiet[1] if quiet else None, "Europe/London", None,
    )  # fmt: skip


def _t(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=LONDON).timestamp()


def test_the_alert_types_own_policy_wins_over_the_units_default() -> None:
    strap = _p("strap_tamper", "critical")
    default = _p("*", "high")
    assert pol.match([default, strap], "strap_tamper", "critical") is strap
    assert pol.match([default, strap], "curfew_breach", "high") is default
    assert pol.match([default], "battery_low", "medium") is None
    assert pol.match([strap], "curfew_breach", "critical") is None
    # A severity the rules may add later pages rather than being silently dropped.
    assert pol.match([default], "new_rule", "unheard-of") is default


@pytest.mark.parametrize(
    ("at", "until"),
    [
        (_t(2026, 3, 28, 22, 59), None),
        (_t(2026, 3, 28, 23, 0), _t(2026, 3, 29, 7, 0)),  # the night the clocks go forward
        (_t(2026, 3, 29, 3, 0), _t(2026, 3, 29, 7, 0)),
        (_t(2026, 3, 29, 7, 0), None),
        (_t(2026, 10, 25, 1, 30), _t(2026, 10, 25, 7, 0)),  # and back (01:30 twice)
    ],
)
def test_quiet_hours_end_at_local_time_across_midnight_and_clock_changes(
    at: float, until: float | None
) -> None:
    assert pol.quiet_until(_p(quiet=("23:00", "07:00")), at) == until


def test_the_night_the_clocks_go_forward_is_an_hour_shorter() -> None:
    start = _t(2026, 3, 28, 23, 0)
    end = pol.quiet_until(_p(quiet=("23:00", "07:00")), start)
    assert end is not None and end - start == 7 * 3600
    assert datetime.fromtimestamp(end, UTC).hour == 6  # 07:00 BST


def test_the_officers_on_call_in_rank_order_each_once() -> None:
    a = pol.Shift(1, 10, 2, 0, 100, frozenset({"email"}), "a@x")
    b = pol.Shift(2, 11, 1, 50, 150, frozenset({"push"}), None)
    c = pol.Shift(3, 10, 1, 0, 60, frozenset({"email"}), "a@x")
    assert [s.id for s in pol.on_call([a, b, c], 55)] == [3, 2]  # user 10 once, at rank 1
    assert [s.id for s in pol.on_call([a, b, c], 60)] == [2, 1]
    assert pol.on_call([a, b, c], 150) == []


def test_backoff_doubles_to_a_ceiling() -> None:
    assert [pol.backoff(n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


@pytest.mark.parametrize(
    ("url", "hosts", "ok"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", ["fcm.googleapis.com"], True),
        ("https://x.notify.windows.com/w/?token=1", ["notify.windows.com"], True),
        ("https://evil-notify.windows.com/w", ["notify.windows.com"], False),
        ("http://fcm.googleapis.com/fcm/send/abc", ["fcm.googleapis.com"], False),
        ("http://127.0.0.1:9/push/a", ["127.0.0.1"], True),
        ("http://10.0.0.1/push", ["10.0.0.1"], False),  # plain http only on loopback
        ("https://169.254.169.254/latest", ["fcm.googleapis.com"], False),
        ("file:///etc/passwd", None, False),
        ("https://paging.force.example/hook", None, True),
    ],
)
def test_push_endpoints_and_webhooks_go_only_where_configured(
    url: str, hosts: list[str] | None, ok: bool
) -> None:
    if ok:
        assert check_url(url, hosts) == url
    else:
        with pytest.raises(Invalid):
            check_url(url, hosts)
