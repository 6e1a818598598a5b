"""The pushed configuration document: authenticated with the unit key, validated, refused
with a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from home_unit import pushed_config as pc
from tests.home_unit.scripted_tag import device_key

UNIT = 5001
KEY = device_key(UNIT)


def doc(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "unit": UNIT,
        "version": 3,
        "issued": 1_790_000_000,
        "tags": [{"tag": 1001, "beacon_key": "ab" * 32}],
        "curfews": [
            {
                "tag": 1001,
                "days": ["mon", "tue"],
                "start": "19:00",
                "end": "07:00",
                "tz": "Europe/London",
            }
        ],
        "thresholds": {"enter_dbm": -70, "exit_dbm": -82, "away_timeout_s": 60, "lease_s": 90},
    }
    d.update(over)
    return d


def refused(payload: bytes) -> str:
    with pytest.raises(pc.ConfigRefused) as e:
        pc.open_payload(payload, UNIT, KEY)
    return e.value.reason


def test_signed_document_opens() -> None:
    cfg = pc.open_payload(pc.sign(doc(), KEY), UNIT, KEY)
    assert cfg.version == 3
    assert cfg.beacon_keys() == {1001: bytes.fromhex("ab" * 32)}
    assert cfg.thresholds.presence().enter_dbm == -70
    assert cfg.thresholds.lease_s == 90
    assert cfg.curfews[0].end == "07:00"
    again = pc.open_payload(pc.sign(cfg, KEY), UNIT, KEY)  # a model signs the same way
    assert again == cfg


def test_mac_covers_the_document_bytes() -> None:
    env = json.loads(pc.sign(doc(), KEY))
    env["doc"] = env["doc"].replace("1001", "1009")
    assert refused(json.dumps(env).encode()) == "mac"
    assert refused(pc.sign(doc(), device_key(5002))) == "mac"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "envelope"),
        (b"[]", "envelope"),
        (b'{"doc": "{}"}', "envelope"),
        (b'{"doc": "{}", "mac": "zz"}', "mac"),
        (b"x" * (pc.MAX_PAYLOAD + 1), "size"),
    ],
)
def test_bad_envelopes(payload: bytes, reason: str) -> None:
    assert refused(payload) == reason


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 0},
        {"unit": "5001"},  # strict: no string-to-int coercion
        {"tags": [{"tag": 1001, "beacon_key": "AB" * 32}]},
        {"tags": [{"tag": 1001, "beacon_key": "ab" * 31}]},
        {"tags": [{"tag": 1001, "beacon_key": "ab" * 32}, {"tag": 1001, "beacon_key": "cd" * 32}]},
        {"tags": [{"tag": 0, "beacon_key": "ab" * 32}]},
        {"thresholds": {"enter_dbm": -90, "exit_dbm": -80}},
        {"thresholds": {"lease_s": 0}},
        {"curfews": [{"tag": 1002, "days": ["mon"], "start": "19:00", "end": "07:00"}]},
        {"curfews": [{"tag": 1001, "days": ["mon"], "start": "25:00", "end": "07:00"}]},
        {
            "curfews": [
                {
                    "tag": 1001,
                    "days": ["mon"],
                    "start": "19:00",
                    "end": "07:00",
                    "tz": "Mars/Olympus",
                }
            ]
        },
        {"surprise": 1},
    ],
)
def test_schema_violations_are_refused(bad: dict[str, Any]) -> None:
    assert refused(pc.sign(doc(**bad), KEY)) == "schema"


def test_document_for_another_unit_is_refused() -> None:
    assert refused(pc.sign(doc(unit=5002), KEY)) == "unit"


def test_broken_json_inside_a_valid_mac_is_refused_as_json() -> None:
    body = '{"unit": 5001,'
    tag = pc.mac.hmac_sha256(pc.config_key(KEY), body.encode()).hex()
    assert refused(json.dumps({"doc": body, "mac": tag}).encode()) == "json"
