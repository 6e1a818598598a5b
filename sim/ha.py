"""The highly available stack on one machine: etcd, two PostgreSQL servers under Patroni (a
primary and a synchronous replica, promoted automatically when the primary dies), and
several independent Mosquitto brokers with the credentials and ACL generated from the
registry. `tagwatch sim run --ha` runs a scenario on it and the fault tests
(tests/e2e/test_failover.py) kill its parts; docs/scaling.md describes the production
layout it stands for.

Every process runs on a free loopback port in a temporary folder and is stopped by stop().
Debian's packages: `etcd-server`, `patroni`, `postgresql`, `mosquitto`. PostgreSQL refuses
to run as root, so as root Patroni (and through it PostgreSQL) runs as the `postgres` user.

Why synchronous replication: a worker acknowledges a frame to its device once its
transaction has committed, and the device then forgets it. With asynchronous replication a
commit the primary confirmed may not have reached the replica when the primary dies, and
the promoted replica would not have it: the frame would be lost for good. With Patroni's
synchronous mode a commit returns only once the synchronous standby has it, and Patroni
promotes only that standby."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.broker import BrokerConfig, BrokerFiles, Mosquitto, free_port


class HaError(RuntimeError):
    pass


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if Path(p).exists()), None
    )
    if found is None:
        raise HaError(f"{name} is not installed: `apt-get install {package}` (make test does this)")
    return found


def _pg_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not found:
        raise HaError("PostgreSQL server binaries not found: `apt-get install postgresql`")
    return Path(found[-1]).parent


def _wait(what: str, ok: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HaError(f"{what}: the process exited: {_tail(log)}")
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            if ok():
                return
        time.sleep(0.1)
    raise HaError(f"timed out waiting for {what}: {_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)


class Etcd:
    """One etcd member: Patroni's distributed configuration store. (In production three,
    on three hosts, so that the store itself survives the loss of one.)"""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "etcd.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 60.0) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            _binary("etcd", "etcd-server"), "--name", "n0", "--data-dir", str(self.dir / "data"),
            "--listen-client-urls", f"http://{self.endpoint}",
            "--advertise-client-urls", f"http://{self.endpoint}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"n0={peer}", "--log-level", "warn",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
        _wait(
            "etcd",
            lambda: _get(f"http://{self.endpoint}/health")[0] == 200,
            timeout,
            self.proc,
            self.log,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


PATRONI_TTL_S = 10  # the leader key's lease: a dead primary is noticed within this
PATRONI_LOOP_S = 1


class PatroniNode:
    """One PostgreSQL server managed by Patroni, with its REST API."""

    def __init__(self, name: str, workdir: Path, etcd: Etcd, scope: str) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pg_port = free_port()
        self.api_port = free_port()
        self.etcd = etcd
        self.scope = scope
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False  # asked to stop, not yet gone
        self.log = self.dir / "patroni.log"
        self.as_user = "postgres" if os.geteuid() == 0 else None
        if self.as_user is not None:
            shutil.chown(self.dir, self.as_user, self.as_user)
            workdir.chmod(0o711)  # the postgres user passes through to its own folder

    def config(self) -> dict[str, Any]:
        creds = {"replication": {"username": "replicator", "password": "replicator"},
                 "superuser": {"username": "postgres", "password": "postgres"}}  # fmt: skip
        return {
            "scope": self.scope,
            "name": self.name,
            "namespace": "/tagwatch/",
            "restapi": {
                "listen": f"127.0.0.1:{self.api_port}",
                "connect_address": f"127.0.0.1:{self.api_port}",
            },
            "etcd3": {"hosts": [self.etcd.endpoint]},
            "bootstrap": {
                "dcs": {
                    "ttl": PATRONI_TTL_S,
                    "loop_wait": PATRONI_LOOP_S,
                    "retry_timeout": 3,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",
                            "max_wal_senders": 5,
                            "max_replication_slots": 5,
                            "wal_keep_size": "64MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, "no-sync"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.dir / "data"),
                "bin_dir": str(_pg_bin()),
                "pgpass": str(self.dir / "pgpass"),
                "authentication": creds,
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 trust",
                    "host all all 127.0.0.1/32 trust",
                ],
                # fsync off: the tests kill processes, not the machine's power (the page cache
                # survives); production keeps fsync on.
                "parameters": {"unix_socket_directories": str(self.dir), "fsync": "off"},
                # A replica's copy starts at once, not after a spread checkpoint, and is not
                # synced to disk (as initdb's above, for the same reason as fsync).
                "basebackup": [{"checkpoint": "fast"}, "no-sync"],
            },
        }

    def start(self) -> None:
        conf = self.dir / "patroni.json"  # YAML is a superset of JSON
        conf.write_text(json.dumps(self.config()))
        if self.as_user is not None:
            shutil.chown(conf, self.as_user, self.as_user)
        home = pwd.getpwnam(self.as_user).pw_dir if self.as_user else str(Path.home())
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [_binary("patroni", "patroni"), str(conf)],
                stdout=out,
                stderr=out,
                cwd=self.dir,
                user=self.as_user,
                group=self.as_user,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home},
                start_new_session=True,
            )

    def role(self) -> str | None:
        """ "primary", "replica", or None while the API does not answer."""
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            code, body = _get(f"http://127.0.0.1:{self.api_port}/patroni")
            if code in (200, 503) and isinstance(body, dict):
                role = body.get("role")
                state = body.get("state")
                if state == "running":
                    return "primary" if role in ("master", "primary") else str(role)
        return None

    def kill(self) -> None:
        """The node dies: Patroni and PostgreSQL SIGKILLed at once, as a host loses power."""
        pm = self.dir / "data" / "postmaster.pid"
        postmaster = None
        with contextlib.suppress(OSError, ValueError):
            postmaster = int(pm.read_text().splitlines()[0])
        if self.proc is not None:
            _kill_group(self.proc.pid)
            self.proc.wait()
            self.proc = None
        if postmaster is not None:
            _kill_group(postmaster)
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(postmaster, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def terminate(self) -> None:
        """Ask Patroni to stop (it stops PostgreSQL itself); stop() waits for it."""
        if self.proc is not None and self.proc.poll() is None and not self.stopping:
            self.proc.terminate()
            self.stopping = True

    def stop(self) -> None:
        if self.proc is None:
            return
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        self.kill()
        self.stopping = False


@dataclass
class PostgresCluster:
    """Patroni with two nodes on etcd; `url()` is the backend's libpq multi-host URL. Its
    files are in a temporary folder of its own (the postgres user must be able to reach
    them, which a caller's folder may not let it), removed by stop()."""

    scope: str = "tagwatch"
    workdir: Path = field(init=False)
    etcd: Etcd = field(init=False)
    nodes: list[PatroniNode] = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="tagwatch-pg-ha-"))
        self.etcd = Etcd(self.workdir)
        self.nodes = [PatroniNode(f"pg{i}", self.workdir, self.etcd, self.scope) for i in (0, 1)]

    def url(self, database: str = "postgres") -> str:
        """Every node, tried in order; libpq keeps the one that takes writes."""
        hosts = "&".join(f"host=127.0.0.1:{n.pg_port}" for n in self.nodes)
        return (
            f"postgresql+psycopg://postgres:postgres@/{database}?{hosts}"
            "&target_session_attrs=read-write"
        )

    def start(self, timeout: float = 120.0) -> None:
        self.etcd.start()
        self.nodes[0].start()
        _wait("the first PostgreSQL primary", lambda: self.primary() is self.nodes[0],
              timeout, self.nodes[0].proc, self.nodes[0].log)  # fmt: skip
        self.nodes[1].start()
        self.wait_replicating(timeout)

    def primary(self) -> PatroniNode | None:
        for n in self.nodes:
            if n.proc is not None and n.role() == "primary":
                return n
        return None

    def sync_standby(self) -> str | None:
        """The member Patroni has made the synchronous standby (None: none yet)."""
        for n in self.nodes:
            if n.proc is None:
                continue
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                code, body = _get(f"http://127.0.0.1:{n.api_port}/cluster")
                if code == 200 and isinstance(body, dict):
                    for m in body.get("members", []):
                        if m.get("role") == "sync_standby" and m.get("state") in (
                            "running",
                            "streaming",
                        ):
                            return str(m["name"])
        return None

    def wait_replicating(self, timeout: float = 120.0) -> None:
        """Until a primary runs and the other node is its synchronous standby."""
        _wait("a synchronous standby", lambda: self.primary() is not None
              and self.sync_standby() is not None, timeout)  # fmt: skip

    def wait_primary(
        self, other_than: PatroniNode | None = None, timeout: float = 120.0
    ) -> PatroniNode:
        _wait("a new primary", lambda: self.primary() not in (None, other_than), timeout)
        p = self.primary()
        assert p is not None
        return p

    def stop(self) -> None:
        for n in self.nodes:  # all at once: each takes seconds to shut its PostgreSQL down
            n.terminate()
        for n in self.nodes:
            n.stop()
        self.etcd.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Brokers:
    """Several independent Mosquitto brokers with the same generated password files and ACL
    (each broker reads its own copy; `reload()` after the registry changes)."""

    def __init__(self, workdir: Path, count: int, auth: BrokerFiles | None) -> None:
        self.workdir = workdir
        self.brokers = [
            Mosquitto(BrokerConfig(auth=auth), workdir=self._dir(i)) for i in range(count)
        ]

    def _dir(self, i: int) -> Path:
        d = self.workdir / f"mosquitto-{i}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def start(self) -> None:
        for b in self.brokers:
            b.start()

    def device_endpoints(self) -> list[str]:
        return [f"{b.host}:{b.port}" for b in self.brokers]

    def backend_endpoints(self) -> list[str]:
        return [f"{b.host}:{b.backend_port}" for b in self.brokers]

    def stop(self) -> None:
        for b in self.brokers:
            b.stop()
