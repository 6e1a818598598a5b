# A board for application tests in both runtimes: scripted sensors, a GNSS receiver that
# produces NMEA epochs once powered for its time-to-first-fix, a modem with switchable
# coverage, and a scripted backend that acknowledges what it receives.
from firmware import board as hal
from firmware import frame as fr
from firmware import nmea, ticks, topics

KEY = bytes(range(32))
DEVICE = 4242
T0 = 1795737600  # 2026-11-27 00:00:00 UTC

CFG = {"device": DEVICE, "key": KEY.hex()}


def epoch(unix, lat_e7, lon_e7, fix=True, hdop="0.9"):
    """RMC + GGA + GSA of one second, as a u-blox receiver sends them."""
    days, sod = divmod(unix, 86400)
    hms = "%02d%02d%02d.00" % (sod // 3600, sod // 60 % 60, sod % 60)
    y, m, d = _civil(days)
    date = "%02d%02d%02d" % (d, m, y % 100)

    def dm(v, width):
        a = abs(v)
        deg = a // 10**7
        minutes_e5 = (a - deg * 10**7) * 60 // 100
        return "%0*d%02d.%05d" % (width, deg, minutes_e5 // 100000, minutes_e5 % 100000)

    if not fix:
        return (
            nmea.sentence("GNRMC,%s,V,,,,,,,%s,,,N" % (hms, date))
            + nmea.sentence("GNGGA,%s,,,,,0,00,99.99,,,,,," % hms)
            + nmea.sentence("GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1")
        )
    lat = dm(lat_e7, 2) + ("," + ("N" if lat_e7 >= 0 else "S"))
    lon = dm(lon_e7, 3) + ("," + ("E" if lon_e7 >= 0 else "W"))
    return (
        nmea.sentence("GNRMC,%s,A,%s,%s,0.50,90.00,%s,,,A" % (hms, lat, lon, date))
        + nmea.sentence("GNGGA,%s,%s,%s,1,09,%s,30.0,M,47.0,M,," % (hms, lat, lon, hdop))
        + nmea.sentence("GNGSA,A,3,01,02,03,04,05,06,07,08,09,,,,1.5,%s,1.2,1" % hdop)
    )


def _civil(days):
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


class FakeModem:
    def __init__(self, board):
        self.board = board
        self.on = False
        self.state = hal.MODEM_OFF
        self.connect_at = 0
        self.coverage = True
        self.sent = []  # every payload published, in order
        self.inbox = []
        self.connects = 0
        self.sessions = []  # (broker, client id, password) of every connect
        self.connect_times = []  # the board's clock at every connect
        self.dead = set()  # brokers that refuse or drop every session

    def power(self, on):
        self.on = on
        self.state = hal.MODEM_OFF

    def connect(self, broker, client_id, password, down_topic):
        self.sessions.append((broker, client_id, password))
        self.connect_times.append(self.board.clock)
        self.state = hal.MODEM_CONNECTING
        self.connect_at = self.board.clock + 5000  # registration + MQTT connect
        self.connects += 1

    def status(self):
        up = self.coverage and self.sessions[-1][0] not in self.dead if self.sessions else False
        if self.state == hal.MODEM_CONNECTING and self.board.clock >= self.connect_at:
            self.state = hal.MODEM_ONLINE if up else hal.MODEM_FAILED
        if self.state == hal.MODEM_ONLINE and not up:
            self.state = hal.MODEM_FAILED
        return self.state

    def publish(self, topic, payload):
        if self.status() != hal.MODEM_ONLINE:
            return False
        assert topic == topics.tag_up(DEVICE)
        self.sent.append(payload)
        if self.board.backend is not None:
            self.board.backend(self, payload)
        return True

    def receive(self):
        if self.on and self.inbox:
            return (topics.tag_down(DEVICE), self.inbox.pop(0))
        return None

    def step(self, now_ms):
        return -1


def acking_backend(modem, payload):
    """Verifies the frame and answers with a signed ACK, as ingest does after committing."""
    f = fr.decode(payload, KEY)
    ack = fr.Frame(fr.ACK, f.device, 0, 0, T0, [fr.Record(fr.ACK_RANGE, (f.boot, f.seq, f.seq))])
    modem.inbox.append(fr.encode(ack, KEY))


class FakeBoard:
    name = "fake"
    capacity_mah = 1000
    currents = {
        "mcu": {"on": 800},
        "gnss": {"off": 0, "acquire": 25000, "track": 12700},
        "modem": {"off": 9, "on": 10000},
    }

    bursts = {"modem_tx": 100000}

    def __init__(self, files, start_ticks=0):
        self.fs = files
        self.clock = 0  # ms of simulated time since this board started
        self.start_ticks = start_ticks
        self.modem = FakeModem(self)
        self.backend = acking_backend
        self.gnss = False
        self.gnss_on_at = 0
        self.had_fix = False
        self.ttff_ms = 25000
        self.sky = True  # False: shielded, epochs without a fix
        self.pos = (507161700, -18753500)
        self.uart = b""
        self.last_epoch = -1
        self.wrong_time = {}  # second -> the Unix time the receiver wrongly reports for it
        self.strap = False
        self.case = False
        self.mv = 4000
        self.charge = (False, False)
        self.moving = False
        self.vibrations = []
        self.feeds = 0
        self.cause = fr.RESET_POWER_ON

    def ticks_ms(self):
        return ticks.add(self.start_ticks, self.clock)

    def advance(self, to_clock):
        """Move time forward; the GNSS writes one epoch per whole second it was on."""
        if self.gnss:
            first = max(self.last_epoch + 1, (self.gnss_on_at + 999) // 1000)
            for s in range(first, to_clock // 1000 + 1):
                t = s * 1000
                # Cold TTFF until the receiver has had a fix; after that it keeps ephemeris
                # on its backup supply and starts hot.
                ttff = self.ttff_ms if not self.had_fix else 2000
                fixed = self.sky and t - self.gnss_on_at >= ttff
                self.had_fix = self.had_fix or fixed
                unix = self.wrong_time.get(s, T0 + s)
                self.uart += epoch(unix, self.pos[0], self.pos[1], fix=fixed)
                self.last_epoch = s
        self.clock = to_clock

    def sleep_until(self, wake_ticks):
        self.advance(self.clock + ticks.diff(wake_ticks, self.ticks_ms()))

    def reset_cause(self):
        return self.cause

    def watchdog_start(self, timeout_ms):
        self.wdt = timeout_ms

    def watchdog_feed(self):
        self.feeds += 1

    def files(self):
        return self.fs

    def gnss_power(self, on):
        self.gnss = on
        if on:
            self.gnss_on_at = self.clock
            self.last_epoch = self.clock // 1000
        self.uart = b""

    def gnss_read(self):
        d, self.uart = self.uart, b""
        return d

    def strap_open(self):
        return self.strap

    def case_open(self):
        return self.case

    def battery_mv(self):
        return self.mv

    def charger(self):
        return self.charge

    def motion(self):
        return 1 if self.moving else 0

    def vibrate(self, pattern, repeats):
        self.vibrations.append((pattern, repeats))


def run(app, board, until_clock, events=()):
    """Poll at every wake the app asks for (and at scripted event times) until until_clock.
    events: (clock ms, callable(board)) in time order."""
    events = list(events)
    wake = app.poll(board.ticks_ms())
    polls = 1
    while board.clock < until_clock:
        nxt = board.clock + ticks.diff(wake, board.ticks_ms())
        if events and events[0][0] < nxt:
            nxt = events[0][0]
        nxt = min(max(nxt, board.clock + 1), until_clock)
        board.advance(nxt)
        while events and events[0][0] <= board.clock:
            events.pop(0)[1](board)
        wake = app.poll(board.ticks_ms())
        polls += 1
    return polls


def frames(board):
    return [fr.decode(p, KEY) for p in board.modem.sent]


def records(board, name):
    out = []
    for f in frames(board):
        for r in f.records:
            if r.name == name:
                out.append((f, r))
    return out
