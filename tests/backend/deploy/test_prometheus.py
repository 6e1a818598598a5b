"""The shipped alerting rules: unit-tested by promtool, then met by the real thing. Debian's
Prometheus scrapes a running API and ingest worker (Mosquitto and PostgreSQL behind them);
stopping the broker fires TagwatchBrokerDisconnected and killing the worker fires
TagwatchIngestDown, and each clears once the fault is repaired. Waits are on Prometheus's
own API (its alert state), never on fixed sleeps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.broker import Mosquitto
from backend.registry import KeyVault, Registry
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import TAG
from tests.backend.conftest import PostgresServer
from tests.backend.deploy import services
from tests.backend.fleet import Fleet

HERE = Path(__file__).parent


def test_promtool_unit_tests_of_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `apt-get install prometheus` (make test does this)"
    proc = subprocess.run(
        [promtool, "test", "rules", "tagwatch-rules.test.yml"],
        cwd=HERE, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_real_prometheus_sees_faults_fire_and_clear(
    tmp_path: Path, broker: Mosquitto, postgres: PostgresServer
) -> None:
    db_url = postgres.create_database()
    engine = make_engine(db_url)
    upgrade(engine)
    keys = {1000 + i: Registry(engine, KeyVault(services.SERVER_KEY)).register(1000 + i, TAG).key
            for i in range(3)}  # fmt: skip
    engine.dispose()
    env = services.service_env(db_url, broker.port)
    api = services.api(env, tmp_path).start()
    worker = services.worker(env, tmp_path, 0).start()
    fleet = Fleet(broker.host, broker.port, keys, client_id="ops-fleet")
    try:
        api.ready()
        worker.ready()
        fleet.start()
        fleet.publish(fleet.frames(2))
        assert fleet.wait_all_acked(60), worker.log()

        # The worker's own metrics say what happened, from the counters ingest keeps.
        text = httpx.get(worker.url + "/metrics", timeout=10).text
        samples = {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.labels
        }
        assert samples["tagwatch_ingest_frames_stored_total"] == 6
        assert samples["tagwatch_broker_connected"] == 1
        assert samples["tagwatch_ingest_frame_age_seconds_count"] == 6

        jobs = {"tagwatch-api": [f"127.0.0.1:{api.port}"],
                "tagwatch-ingest": [f"127.0.0.1:{worker.port}"]}  # fmt: skip
        (tmp_path / "prom").mkdir()
        with services.Prometheus(tmp_path / "prom", jobs) as prom:
            services.wait_for(
                "both targets up",
                lambda: True if set(prom.targets_up().values()) == {"up"} else None,
                90,
                lambda: str(prom.targets_up()),
            )
            assert prom.value("tagwatch_ingest_frames_stored_total") == 6
            assert prom.value('tagwatch_ready{job="tagwatch-api", check="database"}') == 1
            # (Only the faults' own alerts are asserted on: with every `for` at zero, a
            # scrape that times out on a loaded machine may fire a Down alert for a second.)
            assert not {"TagwatchBrokerDisconnected", "TagwatchDatabaseNotReady"} & prom.firing()

            broker.stop()
            prom.wait_firing("TagwatchBrokerDisconnected")
            broker.start()
            prom.wait_cleared("TagwatchBrokerDisconnected")

            worker.kill()
            prom.wait_firing("TagwatchIngestDown")
            worker.start().ready()
            prom.wait_cleared("TagwatchIngestDown")
    finally:
        fleet.stop()
        worker.stop()
        api.stop()

    # The services logged JSON, one object a line; each API request with its request id.
    requests = [line for line in api.json_lines() if line.get("event") == "request"]
    assert any(r["route"] == "/metrics" and len(r["request_id"]) == 32 for r in requests)
    assert any(line.get("event") == "connected" for line in worker.json_lines())


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    assert shutil.which("prometheus"), "prometheus missing: `apt-get install prometheus`"
