"""Mosquitto credentials and ACLs generated from the device registry.

Each device logs in as `tag-<id>`, `hu-<id>` or `vd-<id>` (a victim device) with a password
derived from its own key (firmware.brokers.password: HMAC-SHA256(key, "tagwatch mqtt v1"),
the first 16 bytes in hex), which the device computes from its key: the backend never stores
a second secret, and a leaked password file gives no frame key. The ACL confines each device
to its own topics (docs/protocol.md, MQTT) and the backend's own account to
reading the uplinks it ingests and writing the downlinks it sends (docs/security.md,
"Broker accounts and ACL").

Devices and the backend get separate password files, for separate listeners: devices log in
where their client id is bound to their username, the backend where no device can log in
(backend/broker.py; docs/security.md, "Device identity at the broker")."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from backend.broker import BrokerFiles
from backend.registry import Device
from backend.storage.schema import HOME_UNIT, TAG, VICTIM
from firmware import brokers, topics

# Mosquitto 2's own default. The passwords are 128-bit random-equivalent, so slow hashing
# buys nothing here and would cost on every connection.
PBKDF2_ITERATIONS = 101


def every_device(topic: Callable[[int], str]) -> str:
    """One channel of every device: the topic with its id level as `+`."""
    levels = topic(0).split("/")
    levels[3] = "+"
    return "/".join(levels)


# The backend's account reads exactly the uplinks ingest consumes. The workers subscribe as
# `$share/<group>/<topic>`; Mosquitto checks read access on each message it delivers,
# against the message's own topic, so the shared form needs no line of its own. It reads
# no downlink: nothing in the backend subscribes to one, and only a downlink's device (and
# a tag's home unit) has a reason to see it.
BACKEND_READS: tuple[str, ...] = topics.INGEST
# It writes acknowledgements and commands for tags, acknowledgements for home units, and
# the units' retained configuration. Not a unit's status: that is the unit's own signed,
# retained state and last will, which an account that could write it could also erase
# (an empty retained message) or overwrite.
BACKEND_WRITES: tuple[str, ...] = (
    every_device(topics.tag_down),
    every_device(topics.home_down),
    every_device(topics.home_config),
)
_DEVICE_NAME = re.compile(r"(tag|hu|vd)-[0-9]+")


def is_device_name(name: str) -> bool:
    """A device's username, which on a device listener is also its client id."""
    return _DEVICE_NAME.fullmatch(name) is not None


def username(device: Device) -> str:
    prefix = {TAG: "tag", HOME_UNIT: "hu", VICTIM: "vd"}[device.kind]
    return f"{prefix}-{device.id}"


def device_password(key: bytes) -> str:
    return brokers.password(key)


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A password entry in Mosquitto 2's `$7$` format (PBKDF2-HMAC-SHA512), exactly what
    `mosquitto_passwd` writes."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def device_acl(device: Device, paired_tags: Iterable[int] = ()) -> list[str]:
    """ACL lines for one device: publish its uplinks, read its downlinks."""
    lines = [f"user {username(device)}"]
    if device.kind in (TAG, VICTIM):
        # A victim device speaks the tag's uplink protocol on the tag channels of its own
        # id (docs/protocol.md, "Victim device"); no home unit reads its downlinks.
        lines += [
            f"topic write {topics.tag_up(device.id)}",
            f"topic read {topics.tag_down(device.id)}",
        ]
    elif device.kind == HOME_UNIT:
        lines += [
            f"topic write {topics.home_relay(device.id)}",
            f"topic write {topics.home_up(device.id)}",
            # readwrite: a retained status and the will are published on the unit's behalf
            f"topic readwrite {topics.home_status(device.id)}",
            f"topic read {topics.home_down(device.id)}",
            f"topic read {topics.home_config(device.id)}",
        ]
        # The unit reads its tags' acks so it can free what it relayed for them.
        lines += [f"topic read {topics.tag_down(t)}" for t in sorted(paired_tags)]
    return lines


def backend_acl(backend_user: str) -> list[str]:
    """ACL lines for the backend's own account: read the uplinks, write the downlinks."""
    return [
        f"user {backend_user}",
        *(f"topic read {t}" for t in BACKEND_READS),
        *(f"topic write {t}" for t in BACKEND_WRITES),
    ]


def render(devices: list[Device], backend_user: str, backend_password: str) -> tuple[str, str, str]:
    """(devices' password file, backend's password file, ACL file) contents."""
    if not backend_password:
        raise ValueError("the backend's MQTT password is empty: set TAGWATCH_MQTT_PASSWORD")
    # A name Mosquitto would split or match as a wildcard, or a device's name (whose ACL
    # block would then merge with the backend's), is refused rather than written.
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", backend_user) or is_device_name(backend_user):
        raise ValueError(
            f"the backend's MQTT username {backend_user!r} is not usable: set "
            "TAGWATCH_MQTT_USERNAME to letters, digits, '_', '.' or '-', not a device's name "
            "(tag-<id>, hu-<id>, vd-<id>)"
        )
    backend_passwd = f"{backend_user}:{mosquitto_hash(backend_password)}\n"
    passwd: list[str] = []
    acl = [
        "# generated by `tagwatch backend broker-config` from the device registry",
        *backend_acl(backend_user),
        "",
    ]
    tags_of: dict[int, list[int]] = {}
    for d in devices:
        if d.kind == TAG and d.home_unit is not None:
            tags_of.setdefault(d.home_unit, []).append(d.id)
    for d in devices:
        if d.retired:
            continue
        passwd.append(f"{username(d)}:{mosquitto_hash(device_password(d.key))}")
        acl += [*device_acl(d, tags_of.get(d.id, ())), ""]
    return "".join(f"{line}\n" for line in passwd), backend_passwd, "\n".join(acl)


def write(
    out_dir: Path, devices: list[Device], backend_user: str, backend_password: str
) -> BrokerFiles:
    """Write `passwd`, `backend.passwd` and `acl` (mode 0600) into out_dir atomically.
    Send Mosquitto SIGHUP afterwards to reload them."""
    texts = render(devices, backend_user, backend_password)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = BrokerFiles(out_dir / "passwd", out_dir / "backend.passwd", out_dir / "acl")
    for path, text in zip((files.passwd, files.backend_passwd, files.acl), texts, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return files
