# MQTT topic layout (docs/protocol.md, "MQTT"). Each device publishes and subscribes only under
# its own id, so a broker ACL of a few patterns confines it.
ROOT = "tw/v1"
QOS = 1


def tag_up(tag: int) -> str:
    """Frames a tag uplinks itself over its cellular modem."""
    return "%s/tag/%d/up" % (ROOT, tag)


def tag_down(tag: int) -> str:
    """Acknowledgements and commands for a tag (its home unit may also read them)."""
    return "%s/tag/%d/down" % (ROOT, tag)


def home_relay(unit: int) -> str:
    """Tag frames a home unit relays, byte for byte as the tag signed them."""
    return "%s/hu/%d/relay" % (ROOT, unit)


def home_up(unit: int) -> str:
    """The home unit's own signed frames (presence, power, tamper, heartbeat)."""
    return "%s/hu/%d/up" % (ROOT, unit)


def home_down(unit: int) -> str:
    """Acknowledgements of a home unit's own frames."""
    return "%s/hu/%d/down" % (ROOT, unit)


def home_status(unit: int) -> str:
    """Retained online/offline state; the offline frame is the unit's last will."""
    return "%s/hu/%d/status" % (ROOT, unit)


def home_config(unit: int) -> str:
    """Retained configuration pushed by the backend."""
    return "%s/hu/%d/config" % (ROOT, unit)


# What the backend's ingest workers subscribe to (with a $share/<group>/ prefix at scale).
INGEST = (
    "%s/tag/+/up" % ROOT,
    "%s/hu/+/relay" % ROOT,
    "%s/hu/+/up" % ROOT,
    "%s/hu/+/status" % ROOT,
)


def parse(topic: str) -> "tuple[str, int, str] | None":
    """(kind, id, channel) of a tagwatch topic, e.g. ("tag", 1001, "up"); None if not ours."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] + "/" + parts[1] != ROOT or parts[2] not in ("tag", "hu"):
        return None
    try:
        ident = int(parts[3])
    except ValueError:
        return None
    if ident < 0 or ident > 0xFFFFFFFF or str(ident) != parts[3]:
        return None
    return parts[2], ident, parts[4]
