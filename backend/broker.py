"""A private Mosquitto broker on a free loopback port: the embedded default for `make demo`
and the broker every integration test runs against (never a mock of one).

With the files `tagwatch backend broker-config` writes (`BrokerFiles`), the broker has two
kinds of listener (docs/security.md, "Device identity at the broker"): device listeners,
where a client's id is its username (`use_username_as_clientid`), so a device can only ever
hold its own session; and the backend's listener, whose password file holds the backend's
account alone, so no device can log in there and take one of the backend's client ids.
`per_listener_settings` gives each listener its own password file."""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SEARCH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    pass


def mosquitto_binary() -> str:
    for candidate in SEARCH:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("mosquitto")
    if found is None:
        raise BrokerError(
            "mosquitto is not installed: `apt-get install mosquitto` (make test does this)"
        )
    return found


# Ports for our own listeners come from below the kernel's ephemeral range: a port the
# kernel hands out (bind to 0) is exactly what the next outgoing connection on a busy
# machine may be given, so a server started or restarted on it a moment later could find
# it taken. Below the range only another listener can hold it, and we check that.
PRIVATE_PORTS_FLOOR = 20_000
_ports = random.Random()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the ephemeral range when the system
    says where that is (kernel's choice otherwise)."""
    top = _ephemeral_floor()
    for _ in range(64 if top > PRIVATE_PORTS_FLOOR + 1000 else 0):
        candidate = _ports.randrange(PRIVATE_PORTS_FLOOR, top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class BrokerFiles:
    """The files `broker_credentials.write` produces: the devices' password file, the
    backend's own (its account only) and the ACL both listeners share."""

    passwd: Path
    backend_passwd: Path
    acl: Path


def device_auth(files: BrokerFiles) -> list[str]:
    """Authentication lines of a listener devices connect to: the client id is replaced by
    the authenticated username, so `tag-1010` asking for `tag-1009`'s id gets its own."""
    return [
        "allow_anonymous false",
        "use_username_as_clientid true",
        f"password_file {files.passwd}",
        f"acl_file {files.acl}",
    ]


def backend_auth(files: BrokerFiles) -> list[str]:
    """Authentication lines of the backend's listener: only the backend's account logs in,
    under client ids it chooses (several ingest workers, each with its own session)."""
    return [
        "allow_anonymous false",
        f"password_file {files.backend_passwd}",
        f"acl_file {files.acl}",
    ]


@dataclass
class TlsListener:
    """A Mosquitto TLS listener: server certificate and key, the CA that signed the
    clients' certificates (or, without client certificates, the server's own CA), and
    whether a client must present a certificate signed by it."""

    certfile: Path
    keyfile: Path
    cafile: Path
    port: int = 0
    host: str = "127.0.0.1"
    require_certificate: bool = False
    # With client certificates, the certificate's CN is the MQTT username, so the ACL
    # applies to the identity the CA vouched for, not to a name the client chose.
    use_identity_as_username: bool = False

    def render(self, auth: BrokerFiles | None = None) -> list[str]:
        if not self.port:
            self.port = free_port()
        return [
            f"listener {self.port} {self.host}",
            f"certfile {self.certfile}",
            f"keyfile {self.keyfile}",
            f"cafile {self.cafile}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if self.require_certificate else 'false'}",
            f"use_identity_as_username {'true' if self.use_identity_as_username else 'false'}",
            *(device_auth(auth) if auth else ()),
        ]


@dataclass
class BrokerConfig:
    port: int = 0  # devices connect here (and, without `auth`, everyone)
    # Persistence on, so that a broker restart keeps queued QoS 1 messages for persistent
    # sessions; a queue far above Mosquitto's default of 1000 so that a slow consumer is
    # not silently dropped (see docs/operations.md).
    persistence: bool = True
    max_queued_messages: int = 1_000_000
    # None: anonymous clients, one listener, client ids unbound (tests that need no ACL).
    auth: BrokerFiles | None = None
    backend_port: int = 0  # the backend's own listener (with `auth` only)
    extra: list[str] = field(default_factory=list)
    # An additional TLS listener for devices (docs/security.md); the plain ones stay on
    # loopback.
    tls: TlsListener | None = None

    def render(self, data_dir: Path) -> str:
        lines = [
            f"per_listener_settings {'true' if self.auth else 'false'}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {data_dir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            # Run as whoever started us: as root, Mosquitto would otherwise switch to the
            # `mosquitto` user and could no longer read our private data, password or ACL
            # files (which are 0600 in directories only their owner can enter).
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]
        lines += self.extra
        # Listener options follow their `listener` line, so the listeners come last.
        lines.append(f"listener {self.port} 127.0.0.1")
        if self.auth is None:
            lines.append("allow_anonymous true")
        else:
            if not self.backend_port:
                self.backend_port = free_port()
            lines += device_auth(self.auth)
            lines += [f"listener {self.backend_port} 127.0.0.1", *backend_auth(self.auth)]
        if self.tls is not None:
            lines += self.tls.render(self.auth)
        return "\n".join(lines) + "\n"


class Mosquitto:
    """Start, stop and restart one private Mosquitto. Data survives restart()."""

    def __init__(self, config: BrokerConfig | None = None, workdir: Path | None = None) -> None:
        self.config = config or BrokerConfig()
        if not self.config.port:
            self.config.port = free_port()
        if self.config.auth is not None and not self.config.backend_port:
            self.config.backend_port = free_port()
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="tagwatch-mqtt-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """Where devices connect."""
        return self.config.port

    @property
    def backend_port(self) -> int:
        """Where the backend's clients connect: its own listener when the broker has
        credentials, else the one listener there is."""
        return self.config.backend_port or self.config.port

    def start(self, timeout: float = 10.0) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config.render(self.workdir))
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log, cwd=self.workdir
        )
        waiting = {self.port, self.backend_port}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited at start: {self.log_tail()}")
            for port in sorted(waiting):
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((self.host, port), 0.2),
                ):
                    waiting.discard(port)
            if not waiting:
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {sorted(waiting)}: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash or power cut would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "mosquitto.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def running(config: BrokerConfig | None = None) -> Iterator[Mosquitto]:
    with Mosquitto(config) as broker:
        yield broker
