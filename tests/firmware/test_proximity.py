# The tag's proximity logic, pure: acknowledgement checks (forged, foreign, replayed,
# unpaired), k good acks within a window to enter, lease to leave, the hold after leaving, and
# the beacon counter persisted in blocks.
from firmware import beacon as bc
from firmware import config
from firmware.proximity import COUNTER_BLOCK, BeaconCounter, Proximity
from firmware.state import State
from tests.firmware.fakehome import UNIT, UNIT_KEY, pairing
from tests.firmware.flash import Flash

MICROPYTHON = True
# A littlefs mount beside the loaded test code; 160k left 5 % to spare (measured), too
# little for a CI machine to be sure of: ~25 % above the need.
MICROPYTHON_HEAP = "200k"
TAG = 4242


def cfg(**over):
    c = {"device": TAG, "key": bytes(32).hex(), "home_unit": UNIT, "pairing_key": pairing(TAG)}
    c.update(over)
    return config.merge(c)


def ack(echo, unit=UNIT, tag=TAG, lease=120, unix=1795737600, key=None):
    pkey = key or bc.pairing_key(UNIT_KEY, tag)
    return bc.encode_home_ack(bc.HomeAck(unit, tag, unix, lease, echo, 0), pkey)


def test_good_ack_accepted_once_and_only_for_a_recent_beacon():
    p = Proximity(TAG, cfg())
    for n in (1, 2, 3):
        p.sent(n)
    a = p.check(ack(2))
    assert a is not None and a.echo == 2 and a.home_unit == UNIT
    assert p.check(ack(2)) is None  # the same ack again: a replay
    assert p.check(ack(1)) is None  # older than the last accepted echo
    assert p.check(ack(9)) is None  # echoes a beacon never sent
    assert p.refused == {"replay": 3}
    for n in range(4, 10):
        p.sent(n)
    assert p.check(ack(3)) is None  # no longer recent (and older)
    assert p.check(ack(9)) is not None


def test_forged_foreign_malformed_and_unpaired_acks_are_counted():
    p = Proximity(TAG, cfg())
    p.sent(1)
    assert p.check(ack(1, key=bytes(32))) is None  # forged: wrong key
    other_unit_key = bc.pairing_key(bytes(range(32)), TAG)
    assert p.check(ack(1, unit=5002, key=other_unit_key)) is None  # a neighbour's unit
    # Signed with our pairing key but naming another unit (cannot happen without the key,
    # checked anyway) or another tag.
    assert p.check(ack(1, unit=5002, key=bc.pairing_key(UNIT_KEY, TAG))) is None
    assert p.check(ack(1, tag=TAG + 1, key=bc.pairing_key(UNIT_KEY, TAG))) is None
    assert p.check(b"\xa1" + bytes(10)) is None
    assert p.refused == {"mac": 2, "foreign": 2, "malformed": 1}
    unpaired = Proximity(TAG, cfg(home_unit=0))
    unpaired.sent(1)
    assert unpaired.check(ack(1)) is None and unpaired.refused == {"unpaired": 1}
    assert not unpaired.paired()


def test_k_acks_within_window_enter_lease_leaves_hold_blocks_reentry():
    c = cfg(rf_enter_acks=3, rf_enter_window_s=60, lease_s=300, rf_hold_s=100)
    p = Proximity(TAG, c)
    n = 0
    t = 0
    acks = []
    for t in (0, 40_000, 80_000):  # three acks, but never three within 60 s
        n += 1
        p.sent(n)
        a = p.check(ack(n))
        acks.append(a)
        p.acked(a, t, False)
    assert not p.should_enter(t)
    n += 1
    p.sent(n)
    a = p.check(ack(n, lease=120))
    p.acked(a, 100_000, False)
    assert p.should_enter(100_000)
    p.entered(a, 100_000)
    # The unit's lease (120 s) is below the tag's cap (300 s): it applies.
    assert not p.expired(219_999) and p.expired(220_000)
    p.acked(a, 200_000, True)  # another ack extends it
    assert not p.expired(300_000) and p.expired(320_000)
    p.left(320_000)
    for t in (330_000, 340_000, 350_000):
        p.acked(a, t, False)
    assert not p.should_enter(350_000)  # held in GPS mode for rf_hold_s
    for t in (400_000, 410_000, 420_000):
        p.acked(a, t, False)
    assert p.should_enter(420_000)


def test_tag_caps_the_lease():
    p = Proximity(TAG, cfg(lease_s=60))
    p.sent(1)
    a = p.check(ack(1, lease=600))
    assert p.lease_ms(a) == 60_000


def test_beacon_counter_never_repeats_across_reboots():
    flash = Flash(blocks=32, block_size=512)
    files = flash.files()
    seen = []
    for _boot in range(3):
        c = BeaconCounter(State(files))
        for _ in range(COUNTER_BLOCK + 5):  # crosses a block
            seen.append(c.next())
    assert len(seen) == len(set(seen)) and seen == sorted(seen)
    flash.close()


def test_bad_pairing_key_is_refused_by_config():
    e = None
    try:
        cfg(pairing_key="zz" * 32)
    except config.ConfigError as err:
        e = err
    assert e is not None and "pairing_key" in str(e)
