"""Metrics, health and readiness of the API and the ingest workers (backend/metrics.py,
backend/health.py): values from the real pipeline and rules on both engines, bounded
labels, and readiness that fails for the right reason."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert

from backend import metrics
from backend.api.app import create_app
from backend.broker import free_port
from backend.clock import ManualClock
from backend.ingest import Message
from backend.ingest_worker import IngestWorker, serve_health
from backend.registry import KeyVault, Registry
from backend.rules import store
from backend.rules.sink import MonitoringSink, RuleTimer
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import TAG, orders
from firmware import frame as fr
from firmware import topics
from tests.backend.api.conftest import api_settings
from tests.backend.deploy.services import SERVER_KEY
from tests.backend.frames import home_frame, tag_frame
from tests.backend.test_alerts_pipeline import UNIT_ID, T, World, walk_frames


def sample(collector: object, name: str, **labels: str) -> float | None:
    reg = CollectorRegistry()
    reg.register(collector)  # type: ignore[arg-type]
    return reg.get_sample_value(name, labels)


def test_alert_latency_and_database_state(engine: Engine, clock: ManualClock) -> None:
    world = World(engine, Registry(engine, KeyVault(SERVER_KEY), clock), clock)
    live = ("tagwatch_alert_latency_seconds_count", "false")
    count0 = sample(metrics.ALERT_LATENCY_SECONDS, live[0], late=live[1]) or 0
    sum0 = sample(metrics.ALERT_LATENCY_SECONDS, "tagwatch_alert_latency_seconds_sum", late="false")
    evals0 = sample(metrics.RULES_EVALUATION_SECONDS, "tagwatch_rules_evaluation_seconds_count")
    for m in walk_frames(world):
        world.deliver([m], fr.parse(m.payload).ts + 2)
    # One live alert, raised two seconds after the frame that confirmed it arrived.
    assert sample(metrics.ALERT_LATENCY_SECONDS, live[0], late=live[1]) == count0 + 1
    latency = (sample(metrics.ALERT_LATENCY_SECONDS, "tagwatch_alert_latency_seconds_sum",
                      late="false") or 0) - (sum0 or 0)  # fmt: skip
    assert 2 <= latency <= 80
    assert (sample(metrics.RULES_EVALUATION_SECONDS, "tagwatch_rules_evaluation_seconds_count")
            or 0) >= (evals0 or 0) + 6  # fmt: skip

    db = metrics.DatabaseCollector(engine, clock)
    assert sample(db, "tagwatch_alerts_open", severity="high", state="open") == 1
    assert sample(db, "tagwatch_alerts_open", severity="medium", state="open") == 0
    assert sample(db, "tagwatch_devices_assigned", kind="tag") == 1
    assert sample(db, "tagwatch_devices_assigned", kind="home_unit") == 1
    # The tag was heard just now; its home unit never, since its fitting 600 s before T
    # (silent past the offline grace of 900 s).
    assert sample(db, "tagwatch_devices_silent", kind="tag") == 0
    assert sample(db, "tagwatch_devices_silent", kind="home_unit") == 1
    last = clock.now()
    clock.set(last + 3600)  # under the comms rule's default threshold of 2 hours
    assert sample(db, "tagwatch_devices_silent", kind="tag") == 0
    with engine.begin() as conn:  # an order with its own threshold: 10 minutes
        order = {"subject_id": world.subject, "kind": "licence", "reference": "L1",
                 "starts_at": T - 600, "ends_at": None, "comms_loss_s": 600,
                 "curfew_grace_s": None, "conditions": "", "created_at": T}  # fmt: skip
        conn.execute(insert(orders).values(**order))
        store.bump_config(conn, world.subject, T)
    assert sample(db, "tagwatch_devices_silent", kind="tag") == 1

    # The home unit goes offline (its last will) and stays so past the grace: the rule's
    # episode is what the gauge counts.
    key = world.unit.key
    now = clock.now()
    online = fr.Record(fr.LINK, dt=0, state=fr.LINK_ONLINE)
    offline = fr.Record(fr.LINK, dt=0, state=fr.LINK_OFFLINE)
    up = home_frame(UNIT_ID, key, 1, int(now), [online])
    world.deliver([Message(topics.home_up(UNIT_ID), up)], now)
    assert sample(db, "tagwatch_home_units_offline") == 0
    world.deliver([Message(topics.home_status(UNIT_ID),
                           home_frame(UNIT_ID, key, 2, int(now), [offline]))], now + 5)  # fmt: skip
    world.sink.tick(now + 2000)
    assert sample(db, "tagwatch_home_units_offline") == 1


def label_values(text: str) -> set[str]:
    """Every label value in an exposition; a sample's value may contain any digits."""
    return {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }


def test_api_metrics_are_labelled_by_route_template(tmp_path: Path) -> None:
    with TestClient(create_app(api_settings(tmp_path), ManualClock(T))) as client:
        assert client.get("/api/subjects/987654").status_code == 401
        assert client.get("/no/such/987655").status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        text = client.get("/metrics").text
    assert (
        'tagwatch_http_requests_total{method="GET",route="/api/subjects/{subject_id}",'
        'status="4xx"}' in text
    )
    assert 'route="unmatched",status="4xx"' in text
    assert not [v for v in label_values(text) if "987654" in v or "987655" in v]
    assert 'tagwatch_ready{check="database"} 1.0' in text


def test_api_not_ready_on_an_old_schema_or_without_a_database(tmp_path: Path) -> None:
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(old, "0003_monitoring")
    gone = make_engine(f"postgresql+psycopg://tagwatch@127.0.0.1:{free_port()}/tagwatch")
    for engine in (old, gone):
        with TestClient(create_app(api_settings(tmp_path), ManualClock(T), engine)) as client:
            assert client.get("/healthz").status_code == 200  # alive all the same
            r = client.get("/readyz")
            assert (r.status_code, r.json()) == (
                503,
                {"status": "not ready", "failed": ["database"]},
            )
            text = client.get("/metrics").text
            assert 'tagwatch_ready{check="database"} 0.0' in text
    assert "tagwatch_alerts_open" not in text  # nothing to report without a database
    old.dispose()


def test_worker_health_readiness_and_metrics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    upgrade(engine)
    known = Registry(engine, KeyVault(SERVER_KEY)).register(1001, TAG)
    engine.dispose()
    port = free_port()
    settings = Settings(database_url=url, server_key=SERVER_KEY.hex(), mqtt_port=free_port(),
                        ingest_http_port=port - 3)  # fmt: skip
    worker = IngestWorker(settings, "test-health")
    sink = MonitoringSink(worker.engine, worker.ingest.clock)
    worker.ingest.rules = sink
    timer = RuleTimer(sink)
    ops = serve_health(settings, 3, worker, timer)
    assert ops is not None and ops.port == port
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(base + "/healthz").json() == {"status": "ok"}
        r = httpx.get(base + "/readyz")  # never connected to a broker
        assert (r.status_code, r.json()) == (503, {"status": "not ready", "failed": ["broker"]})
        timer.last_tick -= 10 * timer.every_s
        assert httpx.get(base + "/readyz").json()["failed"] == ["broker", "rules"]
        assert httpx.get(base + "/nope").status_code == 404

        good = tag_frame(1001, known.key, 1, T, 1)
        forged = tag_frame(1001, bytes(32), 2, T, 1)
        stranger = tag_frame(4242, bytes(32), 1, T, 1)
        sent = ((1001, good), (1001, forged), (4242, stranger))
        worker.ingest.process([Message(topics.tag_up(d), p) for d, p in sent])
        text = httpx.get(base + "/metrics").text
        assert "tagwatch_ingest_frames_stored_total 1.0" in text
        assert 'tagwatch_ingest_frames_rejected_total{reason="mac"} 1.0' in text
        assert 'tagwatch_ingest_frames_rejected_total{reason="unknown_device"} 1.0' in text
        assert not [v for v in label_values(text) if "4242" in v or "1001" in v]  # no device
        assert "tagwatch_broker_connected 0.0" in text
        assert 'tagwatch_ready{check="rules"} 0.0' in text
        # A second worker given the same slot cannot listen: it refuses to run unmonitored.
        with pytest.raises(OSError):
            serve_health(settings, 3, worker, timer)
    finally:
        ops.stop()
        worker.engine.dispose()
