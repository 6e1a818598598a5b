# Frames and records as plain dicts: the JSON form of the test vectors, tools and logs. Not in
# the device image (a tag never needs it); runs on both runtimes so the vector tests can use
# it under MicroPython too. `Record.to_dict()` and `Frame.to_dict()` load it on first use.
from firmware import frame as fr
from firmware.runtime import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

_BY_NAME: "dict[str, int]" = {}
for _t in fr.SPECS:
    _BY_NAME[fr.SPECS[_t][0]] = _t


def record_to_dict(rec: "fr.Record") -> "dict[str, Any]":
    if rec.name is None:
        return {"type": rec.type, "raw": rec.raw.hex()}
    d: dict[str, Any] = {"type": rec.name}
    names = fr.SPECS[rec.type][2]
    for i in range(len(names)):
        d[names[i]] = rec.values[i]
    if rec.extra:
        d["extra"] = rec.extra.hex()
    return d


def frame_to_dict(f: "fr.Frame") -> "dict[str, Any]":
    return {
        "version": f.version,
        "mtype": f.mtype,
        "flags": f.flags,
        "mac_len": f.mac_len,
        "device": f.device,
        "boot": f.boot,
        "seq": f.seq,
        "ts": f.ts,
        "records": [record_to_dict(r) for r in f.records],
    }


def record_from_dict(d: "dict[str, Any]") -> "fr.Record":
    t = d["type"]
    if type(t) is int:
        return fr.Record(t, raw=bytes.fromhex(d["raw"]))
    rtype = _BY_NAME.get(t)
    if rtype is None:
        raise ValueError("unknown record name %s" % t)
    fields = {}
    for k in d:
        if k != "type" and k != "extra":
            fields[k] = d[k]
    rec = fr.Record(rtype, **fields)
    if "extra" in d:
        rec.extra = bytes.fromhex(d["extra"])
    return rec


def frame_from_dict(d: "dict[str, Any]") -> "fr.Frame":
    return fr.Frame(
        d["mtype"],
        d["device"],
        d["boot"],
        d["seq"],
        d["ts"],
        [record_from_dict(r) for r in d["records"]],
        flags=d.get("flags", 0),
        mac_len=d.get("mac_len", fr.MAC_DEFAULT),
        version=d.get("version", fr.VERSION),
    )
