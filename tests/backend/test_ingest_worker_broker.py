"""The real ingest worker against what a real Mosquitto (2.0, the generated passwd and ACL)
answers: publishes it refuses, and the retained home-unit status it delivers again to every
new `$share` subscription (docs/operations.md, "Ingest": downlink refusals, retained status).

Waiting never relies on sleeping for an absence: the worker handles a connection's messages
in order, so once a later marker frame is stored, anything delivered before it has been
handled too."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select

from backend import broker_credentials as bc
from backend import ingest_worker
from backend.broker import BrokerConfig, BrokerFiles, Mosquitto
from backend.clock import ManualClock
from backend.ingest_worker import IngestWorker
from backend.registry import Device, KeyVault, Registry
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import HOME_UNIT, TAG, device_events, frames, positions
from backend.storage.schema import security_events as security_table
from firmware import frame as fr
from firmware import topics
from tests.backend.conftest import T0
from tests.backend.frames import acked, home_frame, tag_frame
from tests.backend.test_broker_credentials import BACKEND_PASSWORD, SERVER_KEY, Peer
from tests.descriptors import descriptors_past

TAG_ID, UNIT_ID = 1001, 2001
NOT_AUTHORIZED = 135  # MQTT v5 PUBACK reason code
REFUSED = 0x80  # PUBACK reason codes from here up are refusals (0x10, no subscribers, is not)
DAY = 86_400


class Site:
    """A registry (SQLite), a Mosquitto running the generated passwd and ACL, and the means to
    start real ingest workers and device clients against them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        self.engine = make_engine(self.db_url)
        upgrade(self.engine)
        self.clock = ManualClock(T0)
        registry = Registry(self.engine, KeyVault(SERVER_KEY), self.clock)
        self.devices: dict[int, Device] = {
            UNIT_ID: registry.register(UNIT_ID, HOME_UNIT),
            TAG_ID: registry.register(TAG_ID, TAG, home_unit=UNIT_ID),
        }
        self.registry = registry
        self.broker: Mosquitto | None = None
        self.peers: list[Peer] = []

    def key(self, device: int) -> bytes:
        return self.devices[device].key

    def write_auth(self, refuse: tuple[str, ...] = ()) -> BrokerFiles:
        """passwd and acl as `tagwatch backend broker-config` writes them, minus the
        backend's lines for the topic filters in `refuse` (a misconfigured ACL)."""
        files = bc.write(self.tmp_path / "auth", self.registry.all(), "backend", BACKEND_PASSWORD)
        if refuse:
            drop = {f"topic write {t}" for t in refuse}
            lines = files.acl.read_text().splitlines()
            assert drop <= set(lines), "the ACL no longer has the lines this test removes"
            files.acl.write_text("\n".join(x for x in lines if x not in drop) + "\n")
        return files

    def start_broker(self, refuse: tuple[str, ...] = ()) -> Mosquitto:
        self.broker = Mosquitto(BrokerConfig(auth=self.write_auth(refuse)))
        self.broker.start()
        return self.broker

    def reload_broker_auth(self, refuse: tuple[str, ...] = ()) -> None:
        """Rewrite passwd/acl and have Mosquitto reload them (SIGHUP), as an operator does."""
        assert self.broker is not None and self.broker.proc is not None
        self.write_auth(refuse)
        self.broker.proc.send_signal(signal.SIGHUP)

    def connect(self, device: int, **options: Any) -> Peer:
        """A device's connection (Peer options: port, client_id, persistent)."""
        assert self.broker is not None
        user = bc.username(self.devices[device])
        peer = Peer(self.broker, user, bc.device_password(self.key(device)), **options)
        self.peers.append(peer)
        return peer

    @contextlib.contextmanager
    def worker(self, client_id: str = "tagwatch-ingest-test") -> Iterator[IngestWorker]:
        """The real worker in a thread, on the backend's account; stopped and joined after."""
        assert self.broker is not None
        settings = Settings(
            database_url=self.db_url,
            server_key=SERVER_KEY.hex(),
            mqtt_port=self.broker.backend_port,
            mqtt_password=BACKEND_PASSWORD,
            ingest_batch_ms=5,
        )
        worker = IngestWorker(settings, client_id, clock=self.clock)
        thread = threading.Thread(target=worker.run, name=f"ingest-{client_id}")
        thread.start()
        try:
            yield worker
        finally:
            worker.stopping.set()
            thread.join(15)
            assert not thread.is_alive()

    def stored(self) -> set[tuple[int, int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(frames.c.device, frames.c.boot, frames.c.seq))
            return {(r.device, r.boot, r.seq) for r in rows}

    def security_events(self) -> list[tuple[str, int | None, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(security_table.c.reason, security_table.c.device, security_table.c.topic)
            )
            return [(r.reason, r.device, r.topic) for r in rows]

    def link_states(self) -> list[int]:
        """The home unit's link records stored, in storage order (1 online, 0 offline)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(device_events.c.data)
                .where(device_events.c.device == UNIT_ID, device_events.c.kind == "link")
                .order_by(device_events.c.id)
            )
            return [int(r.data["state"]) for r in rows]

    def close(self) -> None:
        for p in self.peers:
            p.close()
        if self.broker is not None:
            self.broker.close()
        self.engine.dispose()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.close()


def wait_for(
    what: Callable[[], bool], timeout: float = 30.0, step: Callable[[], object] | None = None
) -> bool:
    """True once what() holds; step() (e.g. a device retransmitting) runs between checks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        if step is not None:
            step()
        time.sleep(0.1)
    return what()


def status_frame(site: Site, seq: int, ts: int, state: int) -> bytes:
    return home_frame(UNIT_ID, site.key(UNIT_ID), seq, ts, [fr.Record(fr.LINK, dt=0, state=state)])


def deliver(
    site: Site, device: Peer, topic: str, payload: bytes, key: tuple[int, int, int]
) -> None:
    """Publish as a device does until the frame is stored: until its subscription is in
    place a new worker misses frames, and the device retransmits what is not acknowledged."""
    assert wait_for(
        lambda: key in site.stored(),
        step=lambda: device.publish(topic, payload),
    ), f"{key} never stored"


# ---- retained home-unit status -------------------------------------------------------------


@pytest.mark.parametrize("session", ["resumed", "new"])
def test_retained_status_again_at_resubscribe_is_no_replay(site: Site, session: str) -> None:
    """The unit's retained status was ingested; more than TAGWATCH_REPLAY_AFTER_S later a
    worker subscribes again (its own session resumed, or a worker with a new session): the
    retained copy must not become a replay security event."""
    site.start_broker()
    unit = site.connect(UNIT_ID)
    online = status_frame(site, 1, T0, fr.LINK_ONLINE)
    assert unit.publish(topics.home_status(UNIT_ID), online, retain=True) < REFUSED
    with site.worker("ingest-a"):
        # A fresh worker's new subscription receives the retained status (Mosquitto 2.0
        # delivers it to $share subscriptions too): the unit's state is learnt.
        assert wait_for(lambda: (UNIT_ID, 1, 1) in site.stored())

    site.clock.advance(DAY + 3600)
    later = int(site.clock.now())
    with site.worker("ingest-a" if session == "resumed" else "ingest-b") as w:
        marker = home_frame(UNIT_ID, site.key(UNIT_ID), 2, later, [])
        deliver(site, unit, topics.home_up(UNIT_ID), marker, (UNIT_ID, 1, 2))
        assert site.security_events() == []
        assert site.stored() == {(UNIT_ID, 1, 1), (UNIT_ID, 1, 2)}
        assert site.link_states() == [fr.LINK_ONLINE]
        assert w.ingest.counts["rejected"] == 0
        # Resumed: retain handling 1 kept the broker from sending the status again at all.
        # New session: it came again, and was taken as known state (not acknowledged again).
        assert w.ingest.counts["retained_known"] == (0 if session == "resumed" else 1)
        # The marker's ACK only, once per copy the unit sent (deliver() retransmits until
        # stored, as a device does; on a busy machine a copy may go before the first is in):
        # every duplicate but the retained status is a copy of the marker.
        c = w.ingest.counts
        assert c["acks_queued"] == 1 + c["duplicates"] - c["retained_known"]

        # The exemption is for the broker's retained copy only: the same old frame published
        # again (a live message, as a replay is) is still a replay. (Published until one
        # arrives: with a new session, the first worker's session still holds a share.)
        assert wait_for(
            lambda: site.security_events() != [],
            step=lambda: unit.publish(topics.home_status(UNIT_ID), online),
        )
    assert set(site.security_events()) == {("replay", UNIT_ID, topics.home_status(UNIT_ID))}
    assert site.stored() == {(UNIT_ID, 1, 1), (UNIT_ID, 1, 2)}


@pytest.mark.parametrize("state", [fr.LINK_ONLINE, fr.LINK_OFFLINE], ids=["online", "offline"])
def test_fresh_backend_learns_each_units_state_from_its_retained_status(
    site: Site, state: int
) -> None:
    """A backend starting with an empty database: the retained status (days old) is how it
    learns whether the unit is online; stored and acknowledged like any new frame."""
    site.start_broker()
    unit = site.connect(UNIT_ID)
    assert unit.subscribe(topics.home_down(UNIT_ID)) == [1]
    signed_at = T0 - 2 * DAY
    status = topics.home_status(UNIT_ID)
    assert unit.publish(status, status_frame(site, 1, signed_at, fr.LINK_ONLINE), True) < REFUSED
    newest = 1
    if state == fr.LINK_OFFLINE:  # then it went away: its will replaced the online status
        newest = 2
        assert unit.publish(status, status_frame(site, 2, signed_at, state), True) < REFUSED
    with site.worker() as w:
        assert wait_for(lambda: (UNIT_ID, 1, newest) in site.stored())
        ack = unit.received.get(timeout=15)
    assert site.stored() == {(UNIT_ID, 1, newest)}  # the retained one only: the current state
    assert site.link_states() == [state]
    assert site.security_events() == []
    assert ack[0] == topics.home_down(UNIT_ID)
    assert acked(ack[1], site.key(UNIT_ID)) == {(1, newest)}
    assert w.ingest.counts["frames_stored"] == 1 and w.ingest.counts["retained_known"] == 0


# ---- downlinks the broker refuses ----------------------------------------------------------

# The backend's write lines for ACKs (tag and unit downlinks): an ACL without them refuses
# every ACK, as the security review found (PUBACK 135 while the worker counted them sent).
ACK_WRITES = (bc.BACKEND_WRITES[0], bc.BACKEND_WRITES[1])


def test_refused_acks_are_counted_and_logged_and_lose_nothing(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One refusal line per (kind, reason) for the whole test, however slow the machine.
    monkeypatch.setattr(ingest_worker, "REFUSAL_LOG_EVERY_S", 3600.0)
    assert (
        topics.tag_down(0).replace("/0/", "/+/"),
        topics.home_down(0).replace("/0/", "/+/"),
    ) == ACK_WRITES
    site.start_broker(refuse=ACK_WRITES)
    tag = site.connect(TAG_ID)
    downlinks = tag.received
    assert tag.subscribe(topics.tag_down(TAG_ID)) == [1]
    up = topics.tag_up(TAG_ID)
    frame = tag_frame(TAG_ID, site.key(TAG_ID), 1, T0, fixes=3)
    key = (TAG_ID, 1, 1)
    with structlog.testing.capture_logs() as logs, site.worker() as w:
        c = w.ingest.counts
        deliver(site, tag, up, frame, key)
        # Every ACK the worker queued (one per copy of the frame it received) was refused.
        assert wait_for(lambda: c["acks_refused"] >= 1 and c["acks_refused"] == c["acks_queued"])
        assert c["acks_published"] == 0 and c["acks_failed"] == c["acks_refused"]
        assert c["acks_queued"] == c["frames_stored"] + c["duplicates"]
        assert c["frames_stored"] == 1

        # The device retransmits (it has no ACK): a duplicate, acknowledged again, and that
        # ACK is refused and counted too.
        refused, dups = c["acks_refused"], c["duplicates"]
        assert tag.publish(up, frame) < REFUSED
        assert wait_for(lambda: c["acks_refused"] == refused + 1)
        assert c["duplicates"] == dups + 1 and c["frames_stored"] == 1

        # A command the rules send (from their timer's thread, through the same publisher).
        cmd = fr.Frame(fr.COMMAND, TAG_ID, 0, 1, T0, [fr.Record(fr.CMD_CONFIG, key=1, value=15)], 0)
        assert w.ingest.publish(topics.tag_down(TAG_ID), fr.encode(cmd, site.key(TAG_ID)))
        assert wait_for(lambda: c["commands_refused"] == 1)
        assert c["commands_published"] == 0
        assert w.refusals == {
            ("ack", "Not authorized"): refused + 1,
            ("command", "Not authorized"): 1,
        }
        assert downlinks.empty()  # nothing reached the tag

        # The operator restores the ACL and reloads the broker; the tag's next
        # retransmission is acknowledged, and the ACK gets through.
        site.reload_broker_auth()
        assert wait_for(
            lambda: c["acks_published"] >= 1,
            step=lambda: tag.publish(up, frame),
        )
        topic, ack = downlinks.get(timeout=15)
        assert topic == topics.tag_down(TAG_ID) and acked(ack, site.key(TAG_ID)) == {(1, 1)}
    # Nothing stored was lost or doubled, and no refusal was mistaken for bad input.
    assert site.stored() == {key}
    with site.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(positions)).scalar_one() == 3
    assert site.security_events() == []

    refusals = [e for e in logs if e["event"] == "broker refused a downlink"]
    # One error line per (kind, reason) at first; later ones within REFUSAL_LOG_EVERY_S are
    # counted (in the next line, and the report) instead of flooding the log.
    assert [(e["log_level"], e["kind"], e["reason_code"]) for e in refusals] == [
        ("error", "ack", NOT_AUTHORIZED),
        ("error", "command", NOT_AUTHORIZED),
    ]
    first = refusals[0]
    assert first["topic"] == topics.tag_down(TAG_ID) and first["device"] == TAG_ID
    assert first["reason"] == "Not authorized" and "retransmits" in first["consequence"]
    report = [e for e in logs if e["event"] == "ingest"][-1]  # the worker's report at close
    assert report["acks_refused"] == refused + 1 and report["commands_refused"] == 1
    assert report["acks_published"] >= 1 and report["downlinks_awaiting_puback"] == 0
    assert report["downlinks_refused"] == {
        "ack:Not authorized": refused + 1,
        "command:Not authorized": 1,
    }


# ---- device identity: the workers' client ids ----------------------------------------------


def test_a_device_cannot_knock_an_ingest_worker_off_the_broker(site: Site) -> None:
    """The probe's attack: a device connects under an ingest worker's predictable client id
    (clean start off, to resume its session) while a tag publishes. On a device listener it
    gets its own id; on the backend's listener it cannot log in. Both workers on the shared
    subscription stay connected throughout, and every frame published meanwhile is stored
    (before, the thief held a worker's session and the ACL dropped what reached it)."""
    site.devices[1002] = site.registry.register(1002, TAG)
    broker = site.start_broker()
    tag = site.connect(TAG_ID)
    up, key = topics.tag_up(TAG_ID), site.key(TAG_ID)
    ids = ("tagwatch-ingest-host-0", "tagwatch-ingest-host-1")
    with contextlib.ExitStack() as running:
        logs = running.enter_context(structlog.testing.capture_logs())
        workers = []
        for client_id in ids:
            workers.append(running.enter_context(site.worker(client_id)))
            # One at a time: a worker migrates the schema first, and Alembic's command
            # state is global to the process.
            assert workers[-1].connected.wait(30)
        # Until both workers have stored a frame, both subscriptions may not be in place.
        seq = 0
        while not all(w.ingest.counts["frames_stored"] for w in workers):
            seq += 1
            assert seq < 50, "the shared subscription never reached both workers"
            deliver(site, tag, up, tag_frame(TAG_ID, key, seq, T0 + seq), (TAG_ID, 1, seq))
        published = set()
        for client_id in ids:
            refused = site.connect(1002, port=broker.backend_port, client_id=client_id)
            assert refused.connack == NOT_AUTHORIZED
            refused.close()
            thief = site.connect(1002, client_id=client_id, persistent=True)
            assert thief.connack == 0
            # Shared subscriptions take turns: of four frames, each session gets some.
            for _ in range(4):
                seq += 1
                assert tag.publish(up, tag_frame(TAG_ID, key, seq, T0 + seq)) < REFUSED
                published.add((TAG_ID, 1, seq))
            thief.close()
        assert wait_for(lambda: published <= site.stored()), published - site.stored()
    assert sorted(e["client_id"] for e in logs if e["event"] == "connected") == sorted(ids)
    assert [e for e in logs if e["event"] == "disconnected; reconnecting"] == []


# ---- a process holding many descriptors ----------------------------------------------------


def test_a_worker_past_fd_setsize_takes_frames_and_waits_when_idle(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator runs the worker in a process holding more than 1,024 descriptors (a home
    unit per subject), so its sockets may be past FD_SETSIZE. There it must still store and
    acknowledge, and wait for traffic when there is none: waiting with select(), which
    refuses such a socket, it never waited and spun a core (tens of thousands of network-loop
    steps a second)."""
    site.start_broker()
    tag = site.connect(TAG_ID)
    assert tag.subscribe(topics.tag_down(TAG_ID)) == [1]
    steps = [0]
    pump = IngestWorker._pump

    def counted(self: IngestWorker, timeout: float, limit: int = 1) -> None:
        steps[0] += 1
        pump(self, timeout, limit)

    monkeypatch.setattr(IngestWorker, "_pump", counted)
    key = site.key(TAG_ID)
    with descriptors_past(1100), site.worker():
        deliver(site, tag, topics.tag_up(TAG_ID), tag_frame(TAG_ID, key, 1, T0), (TAG_ID, 1, 1))
        topic, payload = tag.received.get(timeout=30)
        assert topic == topics.tag_down(TAG_ID) and acked(payload, key) == {(1, 1)}
        before = steps[0]
        time.sleep(1.0)  # idle: nothing is published meanwhile
        idle_steps = steps[0] - before
    # Waiting, a step ends at a message or after the batch deadline (0.2 s idle).
    assert idle_steps < 100, f"{idle_steps} network-loop steps in an idle second"
