# Sampling policy and start model, energy ledger, battery, tamper debounce, motion-no-fix.
from firmware import battery, energy, motion, sampling, tamper

MICROPYTHON = True

CFG = {"fix_moving_s": 60, "fix_fast_s": 15, "fix_rest_s": 3600, "rest_after_s": 600}


def test_interval_policy():
    s = sampling.Sampler(CFG)
    assert s.interval_s(0, -1, -1) == 3600  # never moved: at rest
    assert s.interval_s(700000, 200000, -1) == 60  # moved 500 s ago
    assert s.interval_s(900000, 200000, -1) == 3600  # 700 s without motion: at rest
    s.fast_until_unix = 2000
    assert s.interval_s(900000, 200000, 1999) == 15
    assert s.interval_s(900000, 200000, 2000) == 3600
    s.locate = True
    assert s.interval_s(900000, -1, -1) == 15


def test_start_model():
    assert sampling.start_kind(10, False) == sampling.COLD
    assert sampling.start_kind(60, True) == sampling.HOT
    assert sampling.start_kind(3 * 3600, True) == sampling.WARM
    assert sampling.start_kind(30 * 86400, True) == sampling.COLD
    s = sampling.Sampler(CFG)
    assert s.power_on(0) == sampling.COLD
    assert s.acquire_deadline_ms() == 120000
    s.got_fix(20000, 60)
    assert s.should_power_off(20000, 60)
    s.power_off(20000)
    assert not s.wants_on(50000, 60) and s.wants_on(80000, 60)
    assert s.power_on(80000) == sampling.HOT
    assert s.starts == [1, 0, 1]


def test_acquisition_gives_up_at_budget_and_stays_on_when_fast():
    s = sampling.Sampler(CFG)
    s.power_on(0)
    assert not s.should_power_off(119000, 60)
    assert s.should_power_off(120000, 60) and s.timeouts == 1 and s.next_ms == 180000
    s.power_on(200000)
    s.got_fix(201000, 15)
    assert not s.should_power_off(201000, 15)  # 15 s interval: the receiver keeps tracking


def test_energy_ledger_integrates_states():
    led = energy.Ledger({"gnss": {"off": 0, "acquire": 25000, "track": 12700}, "mcu": {"on": 800}})
    led.set("gnss", "acquire", 0)
    led.set("gnss", "track", 2000)
    led.set("gnss", "off", 62000)
    led.charge("gnss", 1000)
    b = led.breakdown_uah(3600000)
    # acquire 25 mA x 2 s + track 12.7 mA x 60 s = 812 mAs; + 1 mAs; mcu 0.8 mA x 1 h
    assert led.uas["gnss"] == 50000 + 762000 + 1000
    assert b["mcu"] == 800
    assert led.average_ua(3600000) == (813000 + 2880000) * 1000 // 3600000
    try:
        led.set("gnss", "warp", 1)
        raise AssertionError("no error")
    except ValueError:
        pass


def test_battery_levels_events_and_hours():
    b = battery.Battery(1000)
    assert battery.level_from_mv(4200) == 100 and battery.level_from_mv(3000) == 0
    assert b.update(4000, False, False) == []
    assert b.level == 70 and b.flags() == 0
    assert b.update(4000, True, True) == [battery.EV_CHARGING]
    assert b.hours_left(10000) == 0xFFFF
    assert b.update(4000, False, False) == [battery.EV_NOT_CHARGING]
    assert b.hours_left(10000) == 70  # 700 mAh at 10 mA
    ev = []
    for mv in (3740,) * 8:  # readings are smoothed: a few to get there
        ev += b.update(mv, False, False)
    assert ev == [battery.EV_LOW] and b.flags() & 4
    for mv in (3600,) * 8:
        ev += b.update(mv, False, False)
    assert ev == [battery.EV_LOW, battery.EV_CRITICAL] and b.flags() & 8
    # Wobbling around the threshold does not fire again until it has recovered.
    for mv in (3610, 3600, 3610, 3600):
        assert battery.EV_CRITICAL not in b.update(mv, False, False)


def test_tamper_debounce_and_latch():
    s = tamper.Sensor(1, debounce_ms=200)
    assert s.sample(True, 1000) == -1 and s.due_ms() == 1200
    assert s.sample(False, 1100) == -1  # a bounce
    assert s.sample(False, 1400) == -1 and s.state == 0 and not s.latched
    assert s.sample(True, 2000) == -1
    assert s.sample(True, 2200) == 1 and s.latched
    assert not s.clear()  # still open
    assert s.sample(False, 3000) == -1
    assert s.sample(False, 3300) == 0 and s.latched  # closed again but latched
    assert s.clear() and not s.latched


def test_motion_without_fix_stages():
    m = motion.MotionNoFix(minutes=10, window_min=60, grace_min=10)
    for minute in range(9):
        m.motion(minute * 60000 + 5)
        assert m.step(minute * 60000 + 10, True) == motion.NONE
    m.motion(9 * 60000)
    assert m.step(9 * 60000, False) == motion.NONE  # not expected to have a fix: no alert
    assert m.step(9 * 60000, True) == motion.NOTIFIED
    assert m.step(15 * 60000, True) == motion.NONE
    assert m.step(19 * 60000, True) == motion.ESCALATED
    assert m.fix() == motion.CLEARED and m.count() == 0
    assert m.fix() == motion.NONE


def test_motion_window_slides():
    m = motion.MotionNoFix(minutes=10, window_min=60, grace_min=10)
    for minute in range(0, 120, 7):  # sparse motion: never 10 minutes within an hour
        m.motion(minute * 60000)
        assert m.step(minute * 60000, True) == motion.NONE
