# A BLE radio for the fake board and a home unit at the other end of it, for RF-mode tests in
# both runtimes. The home unit follows docs/home-unit.md: it verifies each beacon with the
# tag's beacon key, acknowledges those it hears (signed with the pairing key, echoing the
# counter), reads the offload chunk by chunk when the beacon shows pending frames, keeps the
# frames as "relayed", and delivers the backend's ACKs for them at the next contact.
from firmware import beacon as bc
from firmware import frame as fr

UNIT = 5001
UNIT_KEY = bytes(range(100, 132))
T0 = 1795737600


class FakeRadio:
    def __init__(self):
        self.adverts = []  # every advertisement, in order
        self.link = None
        self.home = None  # FakeHome in range, or None
        self.hear_every = 1  # the home unit hears one beacon in this many (edge of range)

    def serve(self, link):
        self.link = link

    def advertise(self, adv):
        self.adverts.append(adv)
        if self.home is not None and len(self.adverts) % self.hear_every == 0:
            self.home.heard(adv, self)

    def contact(self, ack=None, downlinks=(), read=True):
        """One GATT connection: write an ack, read the offload, write downlink frames."""
        link = self.link
        link.connect()
        frames = []
        if ack is not None:
            link.write_ack(ack)
        if read:
            cur = b""
            while True:
                v = link.read_offload()
                if not v:
                    break
                cur += v[1:]
                if v[0] & 1:
                    frames.append(cur)
                    cur = b""
        for d in downlinks:
            for i in range(0, len(d), 500):
                part = d[i : i + 500]
                link.write_downlink(bytes((1 if i + 500 >= len(d) else 0,)) + part)
        link.disconnect()
        return frames


def pairing(tag):
    return bc.pairing_key(UNIT_KEY, tag).hex()


class FakeHome:
    def __init__(self, tag, tag_key, board, lease=120, unit=UNIT, unit_key=UNIT_KEY, clock_s=0):
        self.tag = tag
        self.clock_s = clock_s  # how far the unit's clock is off
        self.tag_key = tag_key
        self.bkey = bc.beacon_key(tag_key)
        self.pkey = bc.pairing_key(unit_key, tag)
        self.unit = unit
        self.board = board
        self.lease = lease
        self.last_counter = -1
        self.acks = []  # every ack sent (a recording for replay tests)
        self.relayed = {}  # (boot, seq) -> frame
        self.downlinks = []  # backend ACKs waiting for the next contact
        self.backend = True  # the backend answers relayed frames with ACKs

    def heard(self, adv, radio):
        b = bc.decode_beacon(bc.manufacturer_payload(adv), self.bkey)
        if b.counter <= self.last_counter:
            return
        self.last_counter = b.counter
        unix = T0 + self.board.clock // 1000 + self.clock_s
        offload = bool(b.status & bc.ST_PENDING)
        a = bc.HomeAck(self.unit, self.tag, unix, self.lease, b.counter, 1 if offload else 0)
        ack = bc.encode_home_ack(a, self.pkey)
        self.acks.append(ack)
        down, self.downlinks = self.downlinks, []
        frames = radio.contact(ack, down, read=offload)
        for data in frames:
            f = fr.decode(data, self.tag_key)
            self.relayed[(f.boot, f.seq)] = data
            if self.backend:
                ack_frame = fr.Frame(
                    fr.ACK, self.tag, 0, 0, unix, [fr.Record(fr.ACK_RANGE, (f.boot, f.seq, f.seq))]
                )
                self.downlinks.append(fr.encode(ack_frame, self.tag_key))
