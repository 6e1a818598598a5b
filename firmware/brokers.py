# The brokers and the login: endpoints ("host:port"), how many a tag's list may hold, and the
# device's password. Used when the list is set, at boot (the provisioned list, firmware/
# config.py; the password, firmware/appboot.py) and when the backend pushes a new one
# (cmd_broker, firmware/cmdrun.py); loaded for that and dropped after both times, so the tag
# does not keep this code all day. The home unit and the backend use the same definitions.
from firmware import mac
from firmware.runtime import const

MAX_BROKERS = const(4)
MAX_ENDPOINT = const(64)  # characters of "host:port"


def endpoint(b: object) -> "tuple[str, int]":
    """A broker endpoint "host:port" as (host, port); ValueError if it is not one."""
    if isinstance(b, str) and len(b) <= MAX_ENDPOINT:
        i = b.rfind(":")
        port = b[i + 1 :]
        if i > 0 and port.isdigit() and 0 < int(port) < 65536:
            return b[:i], int(port)
    raise ValueError("broker %r must be host:port" % (b,))


MQTT_LABEL = b"tagwatch mqtt v1"


def password(key: bytes) -> str:
    """The device's MQTT password, derived from its frame key: the backend derives the same to
    write the broker's password file (backend/broker_credentials.py), so provisioning writes
    no second secret and a leaked password file gives no frame key."""
    return mac.derive(key, MQTT_LABEL)[:16].hex()
