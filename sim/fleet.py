"""The lock-step fleet runner: simulated people wearing tags running the real firmware,
through home units, a real broker and the real backend, on one simulated clock.

Time moves in slices (default 5 s of simulated time). Within a slice every fleet tag is
polled at exactly the times its firmware asked for (`App.poll` returns its next wake) or at
an interrupt (a strap or case edge, the wearer starting to move, a charger change), in time
order; beacons heard by home units are sent to them with their simulated reception time;
HIL tags (the same firmware under the `micropython` binary) run to the end of the slice. At
the slice boundary the backend's clock and the home units' clocks are set to it, and the
runner waits (real time) until the backend has acknowledged every frame the fleet published,
so an ACK reaches a tag at the same simulated moment however loaded the machine is.

What is deterministic for a seed: the world, the truth, every tag's inputs and so every
fix its firmware records. What is not: the exact real-time interleaving of the broker, so a
rare retransmission may differ between runs (ingest de-duplicates it).
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import math
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from firmware import beacon as bc
from firmware import config as fw_config
from firmware import frame as fr
from firmware import topics
from firmware.app import App
from firmware.files import Files
from firmware.state import State
from firmware.store import Store
from sim import clock as sclock
from sim import gnss, nmea, rf
from sim.fleet_board import UART_BUFFER_S, FleetBoard, WorldView, mv_from_level
from sim.fleet_radio import TagRadio
from sim.fleet_uplink import LoopbackUplink, SharedUplink
from sim.generate import Simulation, generate
from sim.params import INDOORS, SHIELDED, RfParams
from sim.scenario import Scenario
from sim.world import PARK

if TYPE_CHECKING:
    from firmware.board import Board

Progress = Callable[[int, int, dict[str, Any]], None]
Key = tuple[int, int, int]  # a frame's (device, boot, seq)
# A process's fleet tags' frames published, frames still held, (boot, seq) sealed per
# device, counters.
TagParts = tuple[
    dict[Key, bytes], dict[Key, bytes], dict[int, set[tuple[int, int]]], dict[str, int]
]
GATEWAY = "sim-fleet"  # the broker account of the fleet's shared connection
BEACON_RANGE_M = 200.0  # beyond this a beacon is never heard (sim.rf: ~28 m through a wall)


@dataclass
class RunOptions:
    seed: int = 0
    subjects: int | None = None
    days: int | None = None
    hil: int = 0
    slice_s: int = 5
    beacon_s: int = 60  # the relaxed beacon interval (RF mode; at rest unanswered): beacon_rf_s
    unit_tick_s: int = 60
    drain_s: int = 3600  # after the end: time for tags to upload what they still hold
    # Part of the run only (benchmarks): start this many hours in, run this many hours.
    from_hour: float = 0.0
    hours: float | None = None
    backend: bool = True  # False: fleet only (frames acknowledged in-process, no broker)
    # While a tag's receiver searches, poll it at its alarm or the receiver's fix rather than
    # every second (Fleet._searching); False: every wake the firmware asks for.
    fast: bool = True
    home_units: bool = True
    hil_heap: str = "160k"
    barrier_timeout_s: float = 15.0
    # Stop waiting at the barrier once nothing has come back from the backend for this long
    # (None: wait the full timeout). For runs with faults: a frame can sit where no ACK can
    # come from for a while (in the session queue of a killed worker, which Mosquitto keeps
    # giving its share of a shared subscription; in a batch retried while there is no
    # primary), and the tags' own retransmissions, in simulated time, are what recovers it.
    barrier_quiet_s: float | None = None
    database_url: str = ""
    workdir: Path | None = None
    record_frames: bool = True
    rules: bool = True  # configure subjects in the backend and run its rules engine
    rules_tick_s: int = 60  # the rules' horizon moves this often (comms loss, grace)
    # The HA stack (sim/ha.py): PostgreSQL under Patroni with a synchronous replica (instead
    # of database_url), this many independent brokers, this many ingest workers.
    ha: bool = False
    brokers: int = 1
    workers: int = 1
    # Each ingest worker (with its rules) in a process of its own, as in production: the
    # second core works; False (and on the HA stack, whose fault tests kill a worker on its
    # thread): on threads of the runner's process (sim/stack.py).
    ingest_processes: bool = True
    # The home units' daemons in a process of their own (sim.home_units.UnitHostProcess);
    # False: on a thread of the runner's process.
    home_unit_process: bool = True
    # Full stack only: the fleet's firmware polled in this many forked processes, each with
    # its own broker connection and simulator radio, lock-stepped with the stack at every
    # slice (sim.shard.StackShards); 1: polled in the runner's process. A fleet-only run
    # is sharded by sim.shard.run_sharded instead.
    shards: int = 1


def with_subjects(sc: Scenario, n: int | None) -> Scenario:
    """The scenario with n subjects; events for subjects beyond n are dropped."""
    if n is None or n == sc.population.subjects:
        return sc
    pop = sc.population.model_copy(update={"subjects": n})
    events = [e for e in sc.events if e.subject < n or e.type == "cellular_outage"]
    return sc.model_copy(update={"population": pop, "events": events})


def hil_subjects(n: int, hil: int) -> list[int]:
    """Which of n subjects run under the micropython binary when `hil` do: spread evenly,
    from subject 0 (a scenario's injections for HIL tags name these)."""
    k = min(hil, n)
    return sorted({int(j * n / k) for j in range(k)}) if k else []


class SubjectWorld:
    """One subject's world as fast scalar look-ups (a poll asks several times)."""

    def __init__(self, sim: Simulation, i: int) -> None:
        self.sim = sim
        self.i = i
        w = sim.world
        s = sim.subjects[i]
        t, x, y, place = sim.movements.track(i)
        self.t = t.tolist()
        self.x = x.tolist()
        self.y = y.tolist()
        self.place = place.tolist()
        self.home = s.home
        self.home_xy = (float(w.place_xy[s.home, 0]), float(w.place_xy[s.home, 1]))
        self.home_walls = s.home_walls
        self.indoor_place = (w.place_kind != PARK).tolist()
        self.grid = w.env_grid
        self.ox, self.oy = w.env_origin
        self.cell = w.env_cell
        self.rows, self.cols = w.env_grid.shape

        def spans(kind: str) -> list[tuple[int, int]]:
            return [
                (j.start_ms, j.end_ms if j.end_ms is not None else 2**62)
                for j in sim.injections
                if j.type == kind and j.subject == i
            ]

        self.strap = spans("strap_cut")
        self.case = spans("case_open")
        self.foil = spans("foil_shielding")
        self.unplugged = spans("home_unit_unplugged")
        self.charging_spans = sim.movements.charging[i]
        self.outages = [
            (o.start_ms, o.end_ms) for o in sim.cellular.outages if o.subject in (i, -1)
        ]
        self.dead = [(z.x, z.y, z.radius_m) for z in sim.cellular.dead]
        self.battery_t = sim.battery_t.tolist()
        self.levels = sim.battery[i].tolist()
        self.flat_t = [bt for bt, lv in zip(self.battery_t, self.levels, strict=True) if lv <= 0]
        self._cache: tuple[int, tuple[float, float, int, bool]] | None = None

    @staticmethod
    def _in(spans: list[tuple[int, int]], t: int) -> bool:
        # Asked several times a poll, mostly of no span: an empty list costs no generator.
        return bool(spans) and any(a <= t < b for a, b in spans)

    def xyp(self, t_ms: int) -> tuple[float, float, int]:
        tl = self.t
        j = bisect.bisect_right(tl, t_ms) - 1
        j = min(max(j, 0), len(tl) - 1)
        k = min(j + 1, len(tl) - 1)
        t0, t1 = tl[j], tl[k]
        f = 0.0 if k == j or t1 <= t0 else min(max((t_ms - t0) / (t1 - t0), 0.0), 1.0)
        x = self.x[j] + f * (self.x[k] - self.x[j])
        y = self.y[j] + f * (self.y[k] - self.y[j])
        pj, pk = self.place[j], self.place[k]
        place = pj if pj >= 0 and (pj == pk or t_ms <= t0) else -1
        return x, y, place

    def position(self, t_ms: int) -> tuple[float, float, int, bool]:
        c = self._cache
        if c is not None and c[0] == t_ms:
            return c[1]
        x, y, place = self.xyp(t_ms)
        if self._in(self.foil, t_ms):
            env = SHIELDED
        elif place >= 0 and self.indoor_place[place]:
            env = INDOORS
        else:
            col = min(max(int((x - self.ox) / self.cell), 0), self.cols - 1)
            row = min(max(int((y - self.oy) / self.cell), 0), self.rows - 1)
            env = int(self.grid[row, col])
        out = (x, y, env, place < 0)
        self._cache = (t_ms, out)
        return out

    def still_until(self, t_ms: int) -> float:
        """Until when (sim ms) from t_ms nothing a tag reads at every poll can change: the
        wearer at rest (position's `moving` false) and the battery not flat. t_ms when the
        wearer moves now; inf when nothing changes to the end of the track."""
        if self.xyp(t_ms)[2] < 0:
            return float(t_ms)
        out = math.inf
        k = bisect.bisect_right(self.flat_t, t_ms)
        if k < len(self.flat_t):
            out = float(self.flat_t[k])
        tl, pl = self.t, self.place
        for k in range(max(bisect.bisect_right(tl, t_ms) - 1, 0), len(tl) - 1):
            if tl[k] >= out:
                break
            if pl[k] < 0 or pl[k] != pl[k + 1]:
                # On the move after this step's first instant (xyp), or from it when the
                # track leaves the place at that very instant (two points at one time).
                b = int(tl[k])
                return float(b - 1 if self.xyp(b)[2] < 0 else b)
        return out

    def at_home(self, t_ms: int) -> bool:
        return self.xyp(t_ms)[2] == self.home

    def hearing(self, t_ms: int, rng: np.random.Generator, p: RfParams) -> int | None:
        """The RSSI at which the subject's home unit hears a beacon sent at t_ms (sim.rf:
        distance from the unit, the walls between), or None: not heard."""
        x, y, _env, _ = self.position(t_ms)
        d = math.hypot(x - self.home_xy[0], y - self.home_xy[1])
        if d > BEACON_RANGE_M:
            return None
        at_home = np.array([self.at_home(t_ms)])
        inner, outer, indoor = rf.walls_between(at_home, np.array([self.home_walls]))
        heard, rssi = rf.receive(np.array([d]), rng, inner, outer, indoor, p)
        return int(rssi[0]) if heard[0] else None

    def battery(self, t_ms: int) -> float:
        k = max(0, bisect.bisect_right(self.battery_t, t_ms) - 1)
        return float(self.levels[min(k, len(self.levels) - 1)])

    def charging(self, t_ms: int) -> bool:
        return self._in(self.charging_spans, t_ms)

    def covered(self, t_ms: int) -> bool:
        if self._in(self.outages, t_ms):
            return False
        x, y, _ = self.xyp(t_ms)
        return not any((x - zx) ** 2 + (y - zy) ** 2 <= r * r for zx, zy, r in self.dead)

    def interrupts(self, start: int, end: int) -> list[int]:
        """Times a real tag would be woken regardless of its timer: strap/case edges (the
        sensors' interrupt), the wearer starting to move (accelerometer), charger edges."""
        out: list[int] = []
        for a, b in self.strap + self.case + self.charging_spans:
            out += [a, b]
        tl, pl = self.t, self.place
        for j in range(len(tl) - 1):
            if pl[j] >= 0 and pl[j + 1] < 0:
                out.append(tl[j])
        return sorted({t for t in out if start <= t < end})

    def view(self) -> WorldView:
        w = self.sim.world

        def to_latlon(x: float, y: float) -> tuple[float, float]:
            lat, lon = w.to_latlon(np.array([x]), np.array([y]))
            return float(lat[0]), float(lon[0])

        return WorldView(
            position=self.position,
            to_latlon=to_latlon,
            strap_open=lambda t: self._in(self.strap, t),
            case_open=lambda t: self._in(self.case, t),
            battery=self.battery,
            charging=self.charging,
            covered=self.covered,
            still_until=self.still_until,
        )


def flash_log(files: Files, cfg: Mapping[str, object]) -> Store:
    """The flash log a tag left on its files (as the firmware opens it at boot)."""

    def setting(name: str) -> int:
        v = cfg.get(name, fw_config.DEFAULTS[name])
        return v if isinstance(v, int) else int(str(v))

    return Store(files, State(files), setting("store_bytes"), setting("seg_bytes"))


@dataclass
class FleetTag:
    index: int
    device: int
    key: bytes
    world: SubjectWorld
    board: FleetBoard
    cfg: dict[str, object]
    app: App | None = None
    radio: TagRadio | None = None
    gen: int = 0
    polls: int = 0
    boots: list[tuple[int, int]] = field(default_factory=list)  # (boot, frames sealed)
    off_since: int | None = None

    charged: tuple[int, float] = (0, -1.0)  # a span (sim ms) the battery is known not flat

    def alive(self, t: int) -> bool:
        # Asked at every poll; the battery is a step function, flat only at flat_t samples.
        a, b = self.charged
        if a <= t < b:
            return True
        if self.world.battery(t) <= 0.0:
            return False
        w = self.world
        k = bisect.bisect_right(w.flat_t, t)
        self.charged = (t, float(w.flat_t[k]) if k < len(w.flat_t) else math.inf)
        return True


@dataclass
class HilSubject:
    index: int
    device: int
    tag: Any  # sim.hil.HilTag
    world: SubjectWorld
    sensors: dict[str, int] = field(default_factory=dict)
    coverage: bool = True
    peer: Any = None  # home_unit.sim_radio_peer.SimRadioPeer: the air to its home unit


@dataclass
class RunResult:
    sim: Simulation
    options: RunOptions
    tags: list[FleetTag]  # none when sharded: the firmware ran in the shards' processes
    hil: list[HilSubject]
    keys: dict[int, bytes]
    unit_keys: dict[int, bytes]
    frames: dict[tuple[int, int, int], bytes]  # every frame a tag published (first copy)
    pending: dict[tuple[int, int, int], bytes]  # still on the tags at the end
    sealed: dict[int, set[tuple[int, int]]]  # device -> every (boot, seq) its firmware sealed
    wall_s: float
    sim_ms: int
    counters: dict[str, int]
    database_url: str = ""
    workdir: Path | None = None


class Fleet:
    """Builds and runs one simulated run; `run()` returns a RunResult. As a context manager
    it keeps the broker and backend up after the run (the demo serves them) until closed."""

    def __init__(self, scenario: Scenario, options: RunOptions | None = None) -> None:
        self.o = options or RunOptions()
        self.scenario = with_subjects(scenario, self.o.subjects)
        self.sim = generate(self.scenario, seed=self.o.seed, days=self.o.days)
        self._own_dir = self.o.workdir is None
        self.workdir = self.o.workdir or Path(tempfile.mkdtemp(prefix="tagwatch-sim-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker: Any = None  # the first broker (backend.broker.Mosquitto)
        self.brokers: Any = None  # sim.ha.Brokers: every broker
        self.cluster: Any = None  # sim.ha.PostgresCluster with ha
        self.backend: Any = None
        self.uplink: SharedUplink | LoopbackUplink | None = None
        self.farm: Any = None
        self.worlds: list[SubjectWorld] = []  # every subject's, by index
        self.endpoints: list[str] = []  # the brokers' device listeners, as tags try them
        self.shards: Any = None  # sim.shard.StackShards when the fleet is sharded
        self._set_up = False
        self.gateways: dict[str, str] = {}  # the fleet's broker accounts: name -> password
        self._heap: list[tuple[int, int, int, int]] = []
        self._by_index: dict[int, FleetTag] = {}
        self.tags: list[FleetTag] = []
        self.hil: list[HilSubject] = []
        self.counters: dict[str, int] = {"barrier_timeouts": 0, "beacons": 0, "reboots": 0}
        self._unit_dir: Path | None = None
        self._hil_pool: ThreadPoolExecutor | None = None  # runs HIL tags' slices side by side
        self.subject_of: dict[int, int] = {}  # backend subject id -> simulation index
        # Held while tags are polled: the home units' GATT operations (other threads) run
        # between polls, as a radio interrupt would.
        self.lock = threading.RLock()
        self.keys: dict[int, bytes] = {}
        self.unit_keys: dict[int, bytes] = {}
        # Called with simulated now (Unix s) after every slice, once the backend has caught
        # up with it (sim/oncall.py steps the notification dispatcher and its officers).
        self.on_slice: list[Callable[[float], None]] = []

    # -- set-up --------------------------------------------------------------------------
    @property
    def begin_ms(self) -> int:
        """Where the run begins: the scenario's start, or from_hour into it. A part of a day
        is a fleet fitted then: tags started, units plugged in, orders begun, backend clock."""
        return self.sim.start_ms + int(self.o.from_hour * 3_600_000)

    def hil_indices(self) -> list[int]:
        return hil_subjects(len(self.sim.subjects), self.o.hil)

    def setup(self) -> None:
        sim = self.sim
        self._set_up = True
        if self.o.shards > 1 and not self.o.backend:
            raise ValueError("a fleet-only run is sharded by sim.shard.run_sharded")
        self.worlds = [SubjectWorld(sim, i) for i in range(len(sim.subjects))]
        hil = set(self.hil_indices())
        if self.o.shards > 1:
            from sim.shard import StackShards

            # First, while this process has no thread: the workers are forked (the world
            # shared copy-on-write), and a fork copies locks other threads hold.
            fleet = [i for i in range(len(sim.subjects)) if i not in hil]
            self.shards = StackShards.fork(self, fleet, self.o.shards)
        pairs = [(s.tag_id, s.home_unit_id) for s in sim.subjects]
        if self.o.backend:
            self._stack(pairs)
        else:
            keygen = random.Random(self.o.seed)
            for tag_id, unit in pairs:
                self.keys[tag_id] = keygen.randbytes(32)
                self.unit_keys[unit] = keygen.randbytes(32)
            self.uplink = LoopbackUplink(self.keys)
        for i in range(len(sim.subjects)):
            if i in hil:
                self.hil.append(self._hil(i, self.worlds[i]))
            elif self.shards is None:
                self.tags.append(self.fleet_tag(i))
        if self.shards is not None:
            self.shards.build(self)
        if self.o.backend:
            # Only now: every fleet tag has its downlink box, so the shared client does not
            # drop the commands as addressed to a tag it does not run.
            self._push_zones(hil, exclude=True)
        if self.o.backend and self.o.home_units:
            self._home_units()

    def fleet_tag(self, i: int) -> FleetTag:
        """Subject i's tag in this process: the firmware's board on the fleet's uplink."""
        s = self.sim.subjects[i]
        w = self.worlds[i]
        assert self.uplink is not None
        rng = np.random.default_rng([self.o.seed, 0xF1EE7, i])
        board = FleetBoard(
            s.tag_id,
            w.view(),
            self.uplink,
            self.uplink.box(s.tag_id),
            rng,
            receiver=self.scenario.receiver(self.o.seed, i),
        )
        cfg = fw_config.merge(self.provisioning(i))
        tag = FleetTag(i, s.tag_id, self.keys[s.tag_id], w, board, cfg)
        tag.radio = TagRadio(s.tag_id, self.lock)
        return tag

    def _stack(self, pairs: list[tuple[int, int]]) -> None:
        """Database, brokers with the credentials and ACL generated from the registry, the
        backend's workers, and the fleet's shared connection. Every device of the run logs
        in with its own account (HIL tags, home units); the fleet's in-process tags share
        one gateway account that may publish every tag's uplink and read every tag's
        downlinks (sim.fleet_uplink), added to the generated files."""
        from backend import broker_credentials
        from backend.broker import BrokerFiles
        from backend.broker_credentials import every_device
        from sim import ha
        from sim.stack import Backend

        database_url = self.o.database_url
        if self.o.ha:
            self.cluster = ha.PostgresCluster()
            self.cluster.start()
            database_url = self.cluster.url()
        auth_dir = self.workdir / "broker-auth"
        files = BrokerFiles(auth_dir / "passwd", auth_dir / "backend.passwd", auth_dir / "acl")
        n = max(self.o.brokers, 2 if self.o.ha else 1)
        self.brokers = ha.Brokers(self.workdir, n, files)
        self.broker = self.brokers.brokers[0]
        self.backend = Backend(
            self.workdir / "backend",
            self.brokers.backend_endpoints(),
            self.begin_ms / 1000,
            database_url,
            monitoring=self.o.rules,
            workers=max(self.o.workers, 2 if self.o.ha else 1),
            processes=self.o.ingest_processes and not self.o.ha,
        )
        keys = self.backend.register(pairs)
        self.keys, self.unit_keys = keys.tags, keys.home_units
        settings = self.backend.settings
        broker_credentials.write(
            auth_dir, self.backend.devices(), settings.mqtt_username, settings.mqtt_password
        )
        # The fleet's connection (one per shard, each its own client id).
        names = [GATEWAY] if self.shards is None else self.shards.gateways()
        self.gateways = {name: secrets.token_hex(16) for name in names}
        for name, password in self.gateways.items():
            with files.passwd.open("a") as f:
                f.write(f"{name}:{broker_credentials.mosquitto_hash(password)}\n")
            with files.acl.open("a") as f:
                f.write(f"\nuser {name}\ntopic write {every_device(topics.tag_up)}\n")
                f.write(f"topic read {every_device(topics.tag_down)}\n")
        self.brokers.start()
        self.endpoints = self.brokers.device_endpoints()
        if self.o.rules:
            from sim import monitoring

            self.subject_of = monitoring.register(
                self.backend.engine, self.sim, fitted_ms=self.begin_ms
            )
        self.backend.start()
        if self.shards is None:
            up = self.shared_uplink(GATEWAY, self.gateways[GATEWAY])
            up.start()
            self.uplink = up

    def shared_uplink(
        self, name: str, password: str, devices: list[int] | None = None
    ) -> SharedUplink:
        """The fleet's broker connection (started once the tags' boxes exist)."""
        up = SharedUplink(self.endpoints, name, password, devices)
        up.record = self.o.record_frames
        return up

    def _push_zones(self, which: set[int], exclude: bool = False) -> None:
        """Each subject's exclusion zones to their tag (cmd_zone on its down topic), as the
        backend sends them when an order's zones are set (backend.zone_push). Fleet tags'
        down topics are held by the shared client; a HIL tag's session exists only after its
        first connection, so its zones go once it has had time to call in."""
        if self.backend is None or not self.subject_of:
            return
        from backend.storage.database import IMMEDIATE
        from backend.zone_push import zone_command

        items: list[tuple[str, bytes, bool]] = []
        # Read then write while ingest writes: a deferred SQLite transaction cannot take the
        # write lock once another writer has committed since its read (database is locked).
        with self.backend.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            for sid, i in sorted(self.subject_of.items()):
                if (i in which) == exclude:
                    continue
                tag = self.sim.subjects[i].tag_id
                data = zone_command(conn, tag, sid, self.keys[tag], self.begin_ms / 1000)
                items.append((topics.tag_down(tag), data, False))
        self.backend.publish(items)

    def provisioning(self, i: int) -> dict[str, object]:
        """A tag's provisioning file: id, key, paired home unit and its home's position."""
        s = self.sim.subjects[i]
        return {"device": s.tag_id, "key": self.keys[s.tag_id].hex(), **self.pairing(i)}

    def pairing(self, i: int) -> dict[str, object]:
        """The provisioning that pairs a tag with its home unit: the unit, the pairing key,
        the relaxed RF beacon interval and the home's position (RF-home fixes)."""
        s = self.sim.subjects[i]
        hx, hy = self.sim.world.place_xy[s.home]
        lat, lon = self.sim.world.to_latlon(np.array([hx]), np.array([hy]))
        return {
            "home_unit": s.home_unit_id,
            "pairing_key": bc.pairing_key(self.unit_keys[s.home_unit_id], s.tag_id).hex(),
            "beacon_rf_s": self.o.beacon_s,
            "home_lat_e7": round(float(lat[0]) * 1e7),
            "home_lon_e7": round(float(lon[0]) * 1e7),
            "home_acc_dm": 150,
            "brokers": self.endpoints,
        }

    def _hil(self, i: int, w: SubjectWorld) -> HilSubject:
        from sim.hil import HilConfig, HilTag

        s = self.sim.subjects[i]
        rnd = random.Random(self.o.seed * 1_000_003 + i)
        start_s = self.begin_ms // 1000  # the tag's now_ms counts from there (run())
        gp = self.sim.params.gnss

        def route(unix: int) -> nmea.Position | None:
            x, y, env, _ = w.position(unix * 1000)
            ok, fx, fy, _err, sats, hdop = gnss.sample_one(x, y, env, rnd, gp)
            if not ok:
                return None
            lat, lon = self.sim.world.to_latlon(np.array([fx]), np.array([fy]))
            return nmea.Position(float(lat[0]), float(lon[0]), sats, hdop)

        cfg = HilConfig(
            device=s.tag_id,
            key=self.keys[s.tag_id],
            workdir=self.workdir / f"hil-{s.tag_id}",
            brokers=self.brokers.device_endpoints() if self.brokers else ["127.0.0.1:1"],
            heap=self.o.hil_heap,
            t0_unix=start_s,
            reply_wait_s=0.0,
            timeout_s=60.0,
            receiver=self.scenario.receiver(self.o.seed, i),
            settings=self.pairing(i),
        )
        h = HilSubject(i, s.tag_id, HilTag(cfg, route), w)
        if self.o.backend and self.o.home_units:
            # Its home unit, exactly as a fleet tag's (sim.home_units), on a simulator radio
            # of its own: beacons go by the same RF model, and the tag runs the unit's GATT
            # requests and ticks it in lock-step itself (sim.hil.HilTag.attach_home).
            from home_unit.sim_radio_peer import SimRadioPeer

            rng = np.random.default_rng([self.o.seed, 0xA1F, i])
            rp = self.sim.params.rf
            h.peer = SimRadioPeer(h.tag.tag_side()).start()
            h.tag.attach_home(h.peer, s.home_unit_id, lambda t: w.hearing(t * 1000, rng, rp))
            h.tag.radio.unit_tick_ms = self.o.unit_tick_s * 1000
        return h

    def _home_units(self) -> None:
        from sim.home_units import HomeUnitFarm

        # The units' SQLite stores sync every commit (synchronous=FULL, as on a real unit); on a
        # RAM disk that costs microseconds instead of a disk flush per beacon.
        shm = Path("/dev/shm")
        base = Path(tempfile.mkdtemp(prefix="tagwatch-hu-", dir=shm)) if shm.is_dir() else None
        self._unit_dir = base
        farm = HomeUnitFarm(
            base or self.workdir / "home-units",
            self.brokers.device_endpoints(),
            process=self.o.home_unit_process,
        )
        for t in self.tags:
            assert t.radio is not None
            farm.add(self.unit_spec(t.index), t.radio)
        if self.shards is not None:  # on their shard's air, which ticks them
            for i, port in self.shards.air_ports().items():
                farm.add(self.unit_spec(i, port))
        for h in self.hil:
            farm.add(self.unit_spec(h.index, h.peer.port))
        farm.push_configs(self.backend.publish, self.begin_ms // 1000)
        farm.start(self.begin_ms / 1000)
        if self.shards is not None:
            self.shards.wait_units()
        for h in self.hil:
            if not h.peer.wait_unit(self.sim.subjects[h.index].home_unit_id, 30.0):
                raise TimeoutError(f"the home unit of HIL tag {h.device} did not connect")
        self.farm = farm

    def unit_spec(self, i: int, radio_port: int | None = None) -> Any:
        """Subject i's home unit (sim.home_units.UnitSpec)."""
        from sim.home_units import UnitSpec

        s = self.sim.subjects[i]
        cur = self.scenario.population.curfew
        unit, key = s.home_unit_id, self.unit_keys[s.home_unit_id]
        tz = self.scenario.timezone
        curfew = (cur.start, cur.end)
        return UnitSpec(unit, key, s.tag_id, self.keys[s.tag_id], curfew, tz, radio_port)

    # -- the run -------------------------------------------------------------------------
    def _boot(self, tag: FleetTag, t: int, reset: int) -> None:
        tag.board.boot(t, reset)
        tag.app = App(cast("Board", tag.board), dict(tag.cfg))
        tag.board.watchdog_feed()
        if tag.radio is not None:
            tag.radio.service = tag.board.radio.service

    def _poll(self, tag: FleetTag, t: int, heap: list[tuple[int, int, int, int]]) -> None:
        b = tag.board
        if not tag.alive(t):
            if tag.app is not None:  # the battery ran flat: power gone, RAM gone
                tag.boots.append((tag.app.boot, tag.app.seq))
                tag.app = None
                if tag.radio is not None:
                    tag.radio.service = None
                b.gnss_on = False
                b.modem.power(False)
                tag.off_since = t
            tag.gen += 1
            heapq.heappush(heap, (t + 60_000, tag.index, tag.gen, 0))
            return
        if tag.app is None:
            self._boot(
                tag, t, fr.RESET_BROWNOUT if tag.off_since is not None else fr.RESET_POWER_ON
            )
            self.counters["reboots"] += int(tag.off_since is not None)
        app = tag.app
        assert app is not None
        b.sim_ms = t
        wake = b.to_sim_ms(app.poll(b.ticks_ms()))
        if self.o.fast and app.gnss_on:
            wake = self._searching(tag, t, wake)
        self._air(tag)
        tag.polls += 1
        tag.gen += 1
        heapq.heappush(heap, (max(wake, t + 1), tag.index, tag.gen, 0))

    @staticmethod
    def _searching(tag: FleetTag, t: int, wake: int) -> int:
        """The fast path's wake for a tag whose receiver is on. The firmware reads it every
        second; while it searches, what those reads find (no-fix epochs) changes no frame
        until the receiver's first fix, and nothing else a poll reads changes until the
        wearer moves or the battery goes flat (interrupts, such as a strap cut, are polled
        anyway). So the tag sleeps to its alarm (App.alarm: its timers) or to the first of
        the every-second polls at or after those, with the UART holding what the receiver
        said meanwhile: the step-by-step run's polls from there on, and the same frames
        (tests/sim/test_fast.py)."""
        assert tag.app is not None
        b = tag.board
        alarm = b.to_sim_ms(tag.app.alarm)
        step = wake - t
        if alarm <= wake or step <= 0:
            return wake
        edge = min(b.gnss_fix_from_ms(), tag.world.still_until(t), t + UART_BUFFER_S * 1000)
        if edge <= wake:
            return wake
        return min(alarm, t + math.ceil((edge - t) / step) * step)

    def _air(self, tag: FleetTag) -> None:
        """The tag's advertisements since its last poll: heard by its home unit or not."""
        out = tag.board.radio.out
        if not out:
            return
        sent, tag.board.radio.out = out, []
        if self.farm is None or tag.radio is None:
            return
        unit = self.sim.subjects[tag.index].home_unit_id
        for tb, adv in sent:
            rssi = tag.world.hearing(tb, tag.board.rng, self.sim.params.rf)
            if rssi is not None:
                self.farm.beacon(unit, tag.radio.address, adv, rssi, tb / 1000)
                self.counters["beacons"] += 1

    def _hil_slice(self, h: HilSubject, t: int) -> None:
        w = h.world
        want = {
            "strap": int(w._in(w.strap, t)),
            "case": int(w._in(w.case, t)),
            "mv": mv_from_level(w.battery(t)),
            "charger": 3 if w.charging(t) else 0,
        }
        for k, v in want.items():
            if h.sensors.get(k) != v:
                h.tag.set_sensor(k, v)
                h.sensors[k] = v
        cov = w.covered(t)
        if cov != h.coverage:
            h.tag.set_coverage(cov)
            h.coverage = cov

    def _hil_slices(self, t: int, until: int) -> list[int]:
        """Run every HIL tag to `until` (ms from the run's start) from its inputs at t; the
        home units of those that handed theirs frames. A tag whose firmware sleeps through
        the slice (wake_only) only has its clock moved; the others run on threads of their
        own at once: each waits on its own micropython process and home unit, and no tag's
        slice reads another's (the home units' process serves them side by side, as it
        serves the fleet's units)."""
        busy: list[HilSubject] = []
        for h in self.hil:
            self._hil_slice(h, t)
            if self.o.fast and not h.world.position(t)[3] and h.tag.sleeps_through(until):
                h.tag.run_until(until, wake_only=True)  # no turn: the clock moves
            else:
                busy.append(h)
        if len(busy) > 1:
            if self._hil_pool is None:
                self._hil_pool = ThreadPoolExecutor(len(self.hil), thread_name_prefix="sim-hil")
            jobs = [self._hil_pool.submit(self._hil_run, h, t, until) for h in busy]
            futures.wait(jobs)
            took = [j.result() for j in jobs]  # a tag's HilError raised here
        else:
            took = [self._hil_run(h, t, until) for h in busy]
        units = [self.sim.subjects[h.index].home_unit_id for h in busy]
        return [u for u, y in zip(units, took, strict=True) if y]

    def _hil_run(self, h: HilSubject, t: int, until: int) -> bool:
        """One HIL tag's slice; whether it handed its home unit frames."""
        moving = h.world.position(t)[3]
        before = len(h.tag.radio.offloaded)
        h.tag.run_until(until, moving=moving, wake_only=self.o.fast)
        return len(h.tag.radio.offloaded) > before

    def _units_power(self, t: int) -> None:
        for w in self.worlds:
            unit = self.sim.subjects[w.i].home_unit_id
            self.farm.set_mains(unit, not w._in(w.unplugged, t))

    def start_polls(self, start: int, stop: int) -> None:
        """Every fleet tag due at start, and at each of its interrupts until stop."""
        heap = self._heap = []
        for tag in self.tags:
            heapq.heappush(heap, (start, tag.index, tag.gen, 0))
            for t in tag.world.interrupts(start, stop):
                heapq.heappush(heap, (t, tag.index, -1, 1))
        self._by_index = {t.index: t for t in self.tags}

    def poll_until(self, t: int, t1: int) -> None:
        """Poll the fleet's tags due in the slice [t, t1], in time order."""
        heap, by_index = self._heap, self._by_index
        with self.lock:
            while heap and heap[0][0] <= t1:
                when, idx, gen, interrupt = heapq.heappop(heap)
                tag = by_index[idx]
                if not interrupt and gen != tag.gen:
                    continue
                self._poll(tag, max(when, t), heap)

    def settle(self, t: float, ticked: list[int]) -> list[int]:
        """The barrier at a slice's end: the relays its beacons began finished (the units
        that had frames pending and `ticked`, sim.home_units.HomeUnitFarm.settle) and every
        frame the fleet published acknowledged. Returns the units this process ticked."""
        units = sorted(self.farm.to_settle) if self.farm is not None else []
        if self.farm is not None:
            self.farm.settle(t, ticked)
        self.wait_acked()
        return units

    def wait_acked(self) -> None:
        """Until the backend has acknowledged every frame the fleet's tags published."""
        up = self.uplink
        if (
            isinstance(up, SharedUplink)
            and up.outstanding
            and not up.wait_acked(self.o.barrier_timeout_s, self.o.barrier_quiet_s)
        ):
            self.counters["barrier_timeouts"] += 1

    def _tick_units(self, t: int) -> None:
        self.farm.tick(t / 1000)
        if self.shards is not None:
            self.shards.tick(t / 1000)

    def run(self, progress: Progress | None = None) -> RunResult:
        if not self._set_up:
            self.setup()
        sim = self.sim
        start = self.begin_ms
        end = sim.end_ms if self.o.hours is None else start + int(self.o.hours * 3_600_000)
        stop = end + self.o.drain_s * 1000
        wall0 = time.monotonic()
        if self.shards is None:
            self.start_polls(start, stop)
        else:
            self.shards.start_polls(start, stop)
        for h in self.hil:
            self._hil_slice(h, start)
            h.tag.start()
        slice_ms = self.o.slice_s * 1000
        next_unit_tick = start
        next_rules_tick = start
        t = start
        if self.backend is not None:
            # Before the home units' first tick: what they send at `start` is not from the
            # backend's future (ingest refuses frames dated ahead of its now).
            self.backend.clock.set(start / 1000)
        if self.farm is not None:
            self._tick_units(start)
        hil_zones_at = start + 15 * 60_000 if self.hil else None
        while t < stop:
            t1 = min(t + slice_ms, stop)
            if self.farm is not None:
                self._units_power(t)
            if self.shards is None:
                self.poll_until(t, t1)
            else:  # the shards poll while the HIL tags run
                self.shards.poll(t, t1)
            # HIL tags' units that took frames this slice (ticked by the tag).
            relayed = self._hil_slices(t, t1 - start)
            if self.shards is not None:
                self.shards.polled()
            t = t1
            if self.backend is not None:
                self.backend.clock.set(t / 1000)
                # Relays this slice's beacons began, in lock-step, and the fleet's frames.
                if self.shards is None:
                    self.settle(t / 1000, relayed)
                else:
                    self.settle(t / 1000, relayed + self.shards.settle(t / 1000))
                if hil_zones_at is not None and t >= hil_zones_at:
                    self._push_zones(set(self.hil_indices()))
                    hil_zones_at = None
            if self.backend is not None and t >= next_rules_tick:
                self.backend.tick(t / 1000)
                next_rules_tick = t + self.o.rules_tick_s * 1000
            if self.farm is not None and t >= next_unit_tick:
                self._tick_units(t)
                next_unit_tick = t + self.o.unit_tick_s * 1000
            for hook in self.on_slice:
                hook(t / 1000)
            if progress is not None:
                progress(t - start, stop - start, self._live())
            if t >= end and self._drained():
                break
        return self._result(t - start, time.monotonic() - wall0)

    def stack(self) -> dict[str, Any]:
        """What the run's backend runs on, as it is now (the report's `stack`): the database
        engine, and on the HA stack each Patroni member's role; brokers and ingest workers
        running."""
        if self.backend is None:
            return {"backend": None}
        out: dict[str, Any] = {
            "database": self.backend.engine.dialect.name,
            "brokers": sum(b.proc is not None for b in self.brokers.brokers),
            "ingest_workers": self.backend.running,
        }
        if self.cluster is not None:
            out["patroni"] = {n.name: n.role() for n in self.cluster.nodes}
        return out

    def _live(self) -> dict[str, Any]:
        if self.shards is not None:
            return dict(self.shards.live())
        published = self.uplink.published if self.uplink is not None else 0
        return {"published": published, "beacons": self.counters["beacons"]}

    def tags_drained(self) -> bool:
        """No fleet tag of this process holds a frame."""
        return all(t.app is None or t.app.store.pending() == 0 for t in self.tags)

    def _drained(self) -> bool:
        tags = self.tags_drained() if self.shards is None else self.shards.drained()
        return tags and all(not h.tag.report().get("pending") for h in self.hil)

    def tag_parts(self) -> TagParts:
        """What this process's fleet tags published (or handed their home units), still
        hold and sealed, and its counters with their polls."""
        frames: dict[tuple[int, int, int], bytes] = {}
        pending: dict[tuple[int, int, int], bytes] = {}
        sealed: dict[int, set[tuple[int, int]]] = {}
        up = self.uplink
        if isinstance(up, SharedUplink):
            for _dev, _topic, payload in up.log:
                f = fr.parse(payload)
                frames.setdefault((f.device, f.boot, f.seq), payload)
        elif isinstance(up, LoopbackUplink):
            frames.update(up.frames)
        for tag in self.tags:
            if tag.radio is not None:
                for payload in tag.radio.offloaded:
                    f = fr.parse(payload)
                    frames.setdefault((f.device, f.boot, f.seq), payload)
            boots = list(tag.boots)
            app = tag.app
            if app is not None:
                boots.append((app.boot, app.seq))
            # A tag whose battery ran flat still holds its log in flash: read it from there.
            store = app.store if app is not None else flash_log(tag.board.files(), tag.cfg)
            for boot, seq, data in store.pending_frames():
                pending[(tag.device, boot, seq)] = data
            sealed[tag.device] = {(b, s) for b, n in boots for s in range(n)}
        counters = dict(self.counters)
        counters["polls"] = sum(t.polls for t in self.tags)
        return frames, pending, sealed, counters

    def _result(self, sim_ms: int, wall_s: float) -> RunResult:
        parts = [self.tag_parts()] if self.shards is None else self.shards.results()
        frames, pending, sealed, counters = parts[0]
        for f, p, s, c in parts[1:]:
            for k, v in f.items():
                frames.setdefault(k, v)
            pending.update(p)
            sealed.update(s)
            for name, n in c.items():
                counters[name] = counters.get(name, 0) + n
        if self.shards is not None:
            counters["shards"] = len(parts)
        for h in self.hil:
            rep = h.tag.report()
            for payload in [p for _ms, _topic, p in h.tag.modem.published] + h.tag.radio.offloaded:
                f = fr.parse(payload)
                frames.setdefault((f.device, f.boot, f.seq), payload)
            sealed[h.device] = {(int(rep["boot"]), s) for s in range(int(rep["seq"]))}
            for payload in h.tag.pending_frames():
                f = fr.parse(payload)
                pending[(h.device, f.boot, f.seq)] = payload
            counters[f"hil_{h.device}_pending"] = int(rep.get("pending", 0))
        if self.farm is not None:
            for k, v in self.farm.counters().items():
                counters[f"home_unit_{k}"] = v
        if self.backend is not None:
            for k, v in self.backend.counts().items():
                counters[f"ingest_{k}"] = v
            counters["rules_ticks_failed"] = self.backend.ticks_failed
        return RunResult(
            sim=self.sim,
            options=self.o,
            tags=self.tags,
            hil=self.hil,
            keys=self.keys,
            unit_keys=self.unit_keys,
            frames=frames,
            pending=pending,
            sealed=sealed,
            wall_s=wall_s,
            sim_ms=sim_ms,
            counters=counters,
            database_url=(
                self.backend.settings.resolved_database_url() if self.backend is not None else ""
            ),
            workdir=self.workdir,
        )

    def close(self) -> None:
        if self._hil_pool is not None:
            # Not waiting: a slice interrupted mid-way may leave a thread on its tag's
            # socket, which the kill below ends.
            self._hil_pool.shutdown(wait=False, cancel_futures=True)
        for h in self.hil:
            with contextlib.suppress(Exception):
                h.tag.kill()
        if self.farm is not None:
            self.farm.stop()
        if self.shards is not None:
            self.shards.stop()
        for h in self.hil:
            if h.peer is not None:
                h.peer.close()
        if isinstance(self.uplink, SharedUplink):
            self.uplink.stop()
        if self.backend is not None:
            self.backend.stop()
        if self.brokers is not None:
            self.brokers.stop()
        if self.cluster is not None:
            self.cluster.stop()
        if self._unit_dir is not None:
            shutil.rmtree(self._unit_dir, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_day(sim: Simulation, t_ms: int) -> str:
    return sclock.to_local(t_ms, sim.scenario.timezone).strftime("%a %d %b %H:%M")
