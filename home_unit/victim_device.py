"""A reference client for a victim's device (a phone app or a small GPS unit): what a device
linked to an order must do, in plain Python that an app can follow (docs/protocol.md,
"Victim device"). It lives beside the home unit because both are the CPython side of the
device protocol; it shares nothing with the unit's daemon but the codec.

To the wire a victim device is a GPS-only tag that is never at home: it signs TAG_DATA
frames (fix, battery, status and command_result records) with its own key through the one
codec (firmware/frame.py), publishes them on `tw/v1/tag/<id>/up` as `vd-<id>`, and reads
`tw/v1/tag/<id>/down`. Nothing is lost: a frame is kept until the backend's end-to-end ACK
names it, and is sent again at reconnection until then.

A warning is a COMMAND frame with a cmd_notify record (message 1: the subject is within the
warning distance; 2: within the alert distance). The client verifies it with its own key,
refuses a command sequence it has already seen (a replay), shows it, and acknowledges it with
a command_result record (the command's sequence, RESULT_OK) in an urgent frame at once. A
warning whose answer does not reach the backend comes again under a new sequence a minute
later (three sends, then the officer is told: docs/protocol.md, "Victim device"), and is shown
and answered again.

Sampling: a fix every FIX_S, every FAST_FIX_S while the backend asks for it (a cmd_config
CFG_FAST_UNTIL: the subject may be within the warning distance, so the rule wants the
victim's side as dense as the tag's; at most MAX_FAST_FOR_S from its arrival, so that no
command keeps a phone's receiver busy for long) and for WARNED_FAST_S after a warning.

`VictimDevice` is sans-IO ("frames in, frames out", on an injected clock); `run` is a small
paho-mqtt loop around it for a real device."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware import frame as fr
from firmware import topics

WARNING, ALERT = 1, 2  # cmd_notify message ids (backend/rules/proximity.py NOTIFY_*)
MAX_PENDING = 1000  # unacknowledged frames kept; past it the oldest goes, counted in `lost`
FIX_S = 30  # the fix (and upload) interval
FAST_FIX_S = 10  # ... while asked to sample fast, or warned
MAX_FAST_FOR_S = 1800  # a CFG_FAST_UNTIL further ahead than this is cut to it
WARNED_FAST_S = 900  # fast sampling after a warning, asked or not


def fast_until(value: int, now: int) -> int:
    """Until when a CFG_FAST_UNTIL `value` arriving at `now` makes the device sample fast."""
    return min(value, now + MAX_FAST_FOR_S)


@dataclass(frozen=True)
class Warning:
    message: int  # WARNING or ALERT
    cmd_seq: int
    at: int  # the command's timestamp (backend time)


@dataclass
class VictimDevice:
    device: int
    key: bytes
    boot: int  # persisted and incremented at every start: (device, boot, seq) never repeats
    last_cmd_seq: int = 0  # persisted: the highest command sequence run
    seq: int = 0
    pending: dict[int, bytes] = field(default_factory=dict)  # seq -> frame, until ACKed
    warnings: list[Warning] = field(default_factory=list)
    lost: int = 0
    refused: int = 0  # downlinks that did not verify, or replays
    fast_until: int = 0  # sampling every FAST_FIX_S until then

    def interval(self, now: int) -> int:
        """Seconds to the next fix."""
        return FAST_FIX_S if now < self.fast_until else FIX_S

    @property
    def up(self) -> str:
        return topics.tag_up(self.device)

    @property
    def down(self) -> str:
        return topics.tag_down(self.device)

    def _seal(self, records: list[fr.Record], now: int, urgent: bool = False) -> bytes:
        self.seq += 1
        flags = fr.FLAG_TIME_VALID | (fr.FLAG_URGENT if urgent else 0)
        frame = fr.Frame(fr.TAG_DATA, self.device, self.boot, self.seq, now, records, flags)
        data = fr.encode(frame, self.key)
        self.pending[self.seq] = data
        if len(self.pending) > MAX_PENDING:
            del self.pending[min(self.pending)]
            self.lost += 1
        return data

    def fixes(self, now: int, fixes: list[tuple[int, float, float, float]]) -> bytes:
        """A frame of fixes [(unix time, lat, lon, accuracy m)] taken up to `now`."""
        recs = [
            fr.Record(
                fr.FIX,
                dt=max(0, min(0xFFFF, now - t)),
                lat_e7=round(lat * 1e7),
                lon_e7=round(lon * 1e7),
                acc_dm=max(0, min(0xFFFF, round(acc * 10))),
                fix_type=2,
                source=fr.SOURCE_GNSS,
                sats=8,
                speed_cms=0,
                course_cd=0,
                hdop_d=10,
            )
            for t, lat, lon, acc in fixes
        ]
        return self._seal(recs, now)

    def downlink(self, payload: bytes, now: int) -> bytes | None:
        """Take a message from the down topic: an ACK frees frames; a command is run and
        answered (the frame to publish is returned). Anything that does not verify with
        the device's key is refused and counted."""
        try:
            f = fr.decode(payload, self.key)
        except fr.DecodeError:
            self.refused += 1
            return None
        if f.device != self.device:
            self.refused += 1
            return None
        if f.mtype == fr.ACK:
            for r in f.records:
                if r.type == fr.ACK_RANGE and r.boot == self.boot:
                    for s in [s for s in self.pending if r.first <= s <= r.last]:
                        del self.pending[s]
            return None
        if f.mtype != fr.COMMAND:
            self.refused += 1
            return None
        if f.seq <= self.last_cmd_seq:
            self.refused += 1
            result = fr.RESULT_REPLAY
        else:
            self.last_cmd_seq = f.seq
            result = fr.RESULT_OK
            for r in f.records:
                if r.type == fr.CMD_NOTIFY and r.message in (WARNING, ALERT):
                    self.warnings.append(Warning(r.message, f.seq, f.ts))
                    self.fast_until = max(self.fast_until, now + WARNED_FAST_S)
                elif r.type == fr.CMD_CONFIG and r.key == fr.CFG_FAST_UNTIL:
                    self.fast_until = max(self.fast_until, fast_until(r.value, now))
                else:
                    result = fr.RESULT_UNKNOWN
        ack = fr.Record(fr.COMMAND_RESULT, dt=0, cmd_seq=f.seq, result=result)
        return self._seal([ack], now, urgent=True)

    def unacknowledged(self) -> list[bytes]:
        """Frames to send again (after a reconnection), oldest first."""
        return [self.pending[s] for s in sorted(self.pending)]


def run(
    dev: VictimDevice,
    host: str,
    port: int,
    password: str,
    clock: Callable[[], float],
    on_warning: Callable[[Warning], None],
    stop: threading.Event,
    fixes: Callable[[], list[tuple[int, float, float, float]]],
) -> None:
    """Publish the device's fixes every `dev.interval` and answer its downlinks until `stop`."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"vd-{dev.device}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(f"vd-{dev.device}", password)
    lock = threading.Lock()

    def connected(c: mqtt.Client, *_: object) -> None:
        c.subscribe(dev.down, qos=topics.QOS)
        with lock:
            again = dev.unacknowledged()
        for data in again:
            c.publish(dev.up, data, qos=topics.QOS)

    def message(c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        with lock:
            seen = len(dev.warnings)
            reply = dev.downlink(bytes(m.payload), int(clock()))
            new = dev.warnings[seen:]
        if reply is not None:
            c.publish(dev.up, reply, qos=topics.QOS)
        for w in new:
            on_warning(w)

    client.on_connect = connected
    client.on_message = message
    client.connect(host, port)
    client.loop_start()
    try:
        while not stop.wait(dev.interval(int(clock()))):
            batch = fixes()
            if batch:
                with lock:
                    data = dev.fixes(int(clock()), batch)
                client.publish(dev.up, data, qos=topics.QOS)
    finally:
        client.disconnect()
        client.loop_stop()
