# Runs under CPython and MicroPython.
from firmware import topics

MICROPYTHON = True


def test_topics_round_trip():
    assert topics.tag_up(1001) == "tw/v1/tag/1001/up"
    assert topics.parse(topics.tag_up(1001)) == ("tag", 1001, "up")
    assert topics.parse(topics.home_relay(9001)) == ("hu", 9001, "relay")
    assert topics.parse(topics.home_status(9001)) == ("hu", 9001, "status")


def test_foreign_topics_are_not_ours():
    for t in (
        "tw/v1/tag/x/up",
        "tw/v2/tag/1/up",
        "tw/v1/car/1/up",
        "tw/v1/tag/1",
        "",
        "tw/v1/tag/01/up",
        "tw/v1/tag/-1/up",
        "tw/v1/tag/4294967296/up",
    ):
        assert topics.parse(t) is None, t
