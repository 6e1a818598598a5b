"""The subject access bundle on real SQLite and PostgreSQL: the wearer's own data from every
device that served them, nobody else's, with the evidence export's hash manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile

from backend.investigations import exports as ex
from backend.services import consent, subject_access
from tests.backend.frames import tag_frame
from tests.backend.services.conftest import TAGS, Unit

DAY = 86_400


def test_bundle_holds_the_wearers_data_only_with_a_verifiable_manifest(unit: Unit) -> None:
    now = int(unit.clock.now())
    first, second, stranger = TAGS
    with unit.engine.begin() as conn:
        consent.enrol(
            conn, unit.subject,
            consent.Consent("IOM voluntary", now - 5 * DAY, frozenset({"police"}), "Sgt A",
                            "DOC-1", now + 80 * DAY),
            unit.officer, now,
        )  # fmt: skip
    unit.assign(first, now - 4 * DAY, now - 2 * DAY)
    unit.assign(second, now - 2 * DAY)
    # Worn: first tag before the swap, second after; the first tag's data after the swap
    # and a stranger's tag are not the wearer's.
    unit.send(first, [tag_frame(first, unit.devices[first].key, 1, now - 3 * DAY, fixes=2),
                      tag_frame(first, unit.devices[first].key, 2, now - DAY)])  # fmt: skip
    unit.send(second, [tag_frame(second, unit.devices[second].key, 1, now - 3600, fixes=3)])
    unit.send(stranger, [tag_frame(stranger, unit.devices[stranger].key, 1, now - 3600)])
    with unit.engine.connect() as conn:
        t0, t1 = subject_access.period(conn, unit.subject, now)
        meta = {"subject_reference": "V-1", "from": t0, "to": t1, "purpose": "subject access"}
        files = subject_access.build(conn, unit.subject, t0, t1, meta)
    assert (t0, t1) == (now - 4 * DAY, now)
    data = ex.bundle(files, ex.manifest(files, meta, 42), now)
    z = zipfile.ZipFile(io.BytesIO(data))
    man = json.loads(z.read("manifest.json"))
    assert man["audit_id"] == 42 and man["format"] == ex.MANIFEST_FORMAT
    names = {f["name"] for f in man["files"]}
    assert names == {*ex.FILE_NAMES.values(), subject_access.ENROLMENT_FILE}
    for f in man["files"]:
        assert hashlib.sha256(z.read(f["name"])).hexdigest() == f["sha256"]
    trail = json.loads(z.read("trail.geojson"))
    devices = [p["properties"]["device"] for p in trail["features"] if "t" in p["properties"]]
    assert sorted(devices) == [first, first, second, second, second]
    [row] = csv.DictReader(io.StringIO(z.read("enrolments.csv").decode()))
    assert row["document_ref"] == "DOC-1" and row["sharing"] == "police"
    assert row["withdrawn_at"] == ""
