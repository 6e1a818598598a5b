"""TLS on the broker hop, against a real Mosquitto: a CA generated here signs the server's
certificate and a device's client certificate; clients verify the server (and its name),
plaintext and wrong-CA clients are refused, and with client certificates required the
certificate's CN is the MQTT identity the generated ACL confines. The TLS listener is a
device listener: a client's id is its identity, and the backend's account has its own
listener."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from backend import broker_credentials as bc
from backend.broker import BrokerConfig, BrokerFiles, Mosquitto, TlsListener
from backend.registry import KeyVault, Registry
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import TAG
from firmware import topics

BACKEND_PASSWORD = "backend-secret-for-tls-tests"


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_cert: Path  # tag-1002's
    other_key: Path
    other_ca: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, cn: str, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _ca("tagwatch test CA")
    s_key, s_cert = _leaf(ca_key, ca, "broker.test", server=True)
    c_key, c_cert = _leaf(ca_key, ca, "tag-1001", server=False)
    o_key, o_cert = _leaf(ca_key, ca, "tag-1002", server=False)
    _, other = _ca("someone else's CA")
    return Pki(
        ca=_write_cert(ca, d / "ca.pem"),
        server_cert=_write_cert(s_cert, d / "server.pem"),
        server_key=_write_key(s_key, d / "server.key"),
        client_cert=_write_cert(c_cert, d / "tag-1001.pem"),
        client_key=_write_key(c_key, d / "tag-1001.key"),
        other_cert=_write_cert(o_cert, d / "tag-1002.pem"),
        other_key=_write_key(o_key, d / "tag-1002.key"),
        other_ca=_write_cert(other, d / "other-ca.pem"),
    )


@pytest.fixture
def credentials(tmp_path: Path) -> tuple[BrokerFiles, bytes]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    registry = Registry(engine, KeyVault(bytes(range(32))))
    tag = registry.register(1001, TAG)
    registry.register(1002, TAG)
    return bc.write(tmp_path / "auth", registry.all(), "backend", BACKEND_PASSWORD), tag.key


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}")


@contextlib.contextmanager
def _broker(config: BrokerConfig) -> Iterator[Mosquitto]:
    with Mosquitto(config) as b:
        assert config.tls is not None
        _wait_listening(config.tls.port)
        yield b


def _connect(
    port: int,
    user: str | None,
    password: str | None,
    ca: Path | None,
    cert: tuple[Path, Path] | None = None,
    client_id: str = "t",
) -> int | str:
    """CONNACK reason code (0 = accepted), or the error that stopped the connection."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if user is not None:
        c.username_pw_set(user, password)
    if ca is not None:
        c.tls_set(
            ca_certs=str(ca),
            certfile=str(cert[0]) if cert else None,
            keyfile=str(cert[1]) if cert else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    result: queue.Queue[int] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: result.put(rc.value)
    try:
        c.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError) as e:
        return type(e).__name__
    c.loop_start()
    try:
        return result.get(timeout=6)  # generous: a loaded CI machine
    except queue.Empty:
        return "no CONNACK"
    finally:
        c.loop_stop()
        c.disconnect()


def test_tls_listener_with_passwords_from_the_registry(
    pki: Pki, credentials: tuple[BrokerFiles, bytes]
) -> None:
    files, tag_key = credentials
    tls = TlsListener(pki.server_cert, pki.server_key, pki.ca)
    with _broker(BrokerConfig(auth=files, tls=tls)):
        good = bc.device_password(tag_key)
        assert _connect(tls.port, "tag-1001", good, pki.ca) == 0
        # Not authorized (MQTT v5 reason 135) with a wrong password, even over TLS; nor is
        # the backend's account, whose listener is its own (a private address).
        assert _connect(tls.port, "tag-1001", "0" * 32, pki.ca) == 135
        assert _connect(tls.port, "backend", BACKEND_PASSWORD, pki.ca) == 135
        # A client that trusts another CA refuses the broker's certificate.
        assert _connect(tls.port, "tag-1001", good, pki.other_ca) == "SSLCertVerificationError"
        # Plaintext MQTT to the TLS port gets no answer.
        assert _connect(tls.port, "tag-1001", good, None) != 0


def test_client_certificates_required_and_cn_is_the_acl_identity(
    pki: Pki, credentials: tuple[BrokerFiles, bytes]
) -> None:
    files, _ = credentials
    tls = TlsListener(
        pki.server_cert, pki.server_key, pki.ca,
        require_certificate=True, use_identity_as_username=True,
    )  # fmt: skip
    with _broker(BrokerConfig(auth=files, tls=tls)) as broker:
        cert = (pki.client_cert, pki.client_key)
        assert _connect(tls.port, None, None, pki.ca, cert) == 0
        # No client certificate: the handshake fails.
        assert _connect(tls.port, None, None, pki.ca) != 0
        # The CN is the identity the ACL confines: tag-1001 reaches its own uplink only. The
        # broker routes a message before it acknowledges it, so anything let through would
        # arrive ahead of what is published after that acknowledgement.
        seen: queue.Queue[tuple[str, bytes]] = queue.Queue()
        backend = _client(broker.backend_port, "ingest", user="backend", password=BACKEND_PASSWORD)
        backend.on_message = lambda _c, _u, m: seen.put((m.topic, bytes(m.payload)))
        subscribed = threading.Event()
        backend.on_subscribe = lambda *_a: subscribed.set()
        backend.subscribe(f"{topics.ROOT}/tag/+/up", qos=1)
        assert subscribed.wait(10)
        tag = _client(tls.port, "tag-1001", ca=pki.ca, cert=cert)  # as the firmware names it
        # And the CN is the client id: tag-1002's certificate asking for tag-1001's id gets
        # its own, so tag-1001 stays connected.
        dropped: list[int] = []
        tag.on_disconnect = lambda _c, _u, _f, rc, _p: dropped.append(rc.value)
        thief = _client(tls.port, "tag-1001", ca=pki.ca, cert=(pki.other_cert, pki.other_key))
        try:
            for t in (1002, 1001):
                tag.publish(topics.tag_up(t), b"frame", qos=1).wait_for_publish(10)
            assert seen.get(timeout=10) == (topics.tag_up(1001), b"frame")
            thief.publish(topics.tag_up(1002), b"thief's own", qos=1).wait_for_publish(10)
            assert seen.get(timeout=10) == (topics.tag_up(1002), b"thief's own")
            tag.publish(topics.tag_up(1001), b"second", qos=1).wait_for_publish(10)
            assert seen.get(timeout=10) == (topics.tag_up(1001), b"second")
            assert dropped == []
        finally:
            for c in (tag, thief, backend):
                c.loop_stop()
                c.disconnect()


def _client(
    port: int,
    client_id: str,
    ca: Path | None = None,
    cert: tuple[Path, Path] | None = None,
    user: str | None = None,
    password: str | None = None,
) -> mqtt.Client:
    """A connected client (CONNACK success), over TLS when `ca` is given."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if ca is not None:
        c.tls_set(
            ca_certs=str(ca),
            certfile=str(cert[0]) if cert else None,
            keyfile=str(cert[1]) if cert else None,
        )
    if user is not None:
        c.username_pw_set(user, password)
    connected: queue.Queue[int] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: connected.put(rc.value)
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.get(timeout=10) == 0
    return c
