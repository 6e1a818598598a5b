"""tagwatch's services as an operator runs them: `tagwatch backend serve` and `tagwatch
backend ingest` as processes, with their logs in files, waited on through their own
/readyz; and Debian's real Prometheus scraping them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from backend.broker import free_port

TAGWATCH = str(Path(sys.executable).parent / "tagwatch")
RULES = Path(__file__).parents[3] / "backend" / "deploy" / "prometheus" / "tagwatch-rules.yml"
SERVER_KEY = bytes(range(32))
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, why: Callable[[], str]) -> T:
    """Poll `probe` until it returns something (not None); fail with `why()` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{why()}")
        time.sleep(0.1)


def end(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 30) -> None:
    """Send `sig`; SIGKILL whatever has not exited after `timeout`."""
    if proc is None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http_ok(
    name: str,
    proc: subprocess.Popen[bytes] | None,
    url: str,
    log: Callable[[], str],
    timeout: float,
) -> None:
    """Wait until GET `url` answers 200; fail at once if the process exits."""

    def probe() -> bool | None:
        if proc is None or proc.poll() is not None:
            raise AssertionError(f"{name} exited:\n{log()}")
        try:
            return True if httpx.get(url, timeout=5).status_code == 200 else None
        except httpx.HTTPError:
            return None

    wait_for(f"{name} ready", probe, timeout, log)


def service_env(db_url: str, mqtt_port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TAGWATCH_DATABASE_URL": db_url,
        "TAGWATCH_SERVER_KEY": SERVER_KEY.hex(),
        "TAGWATCH_MQTT_PORT": str(mqtt_port),
        "TAGWATCH_INGEST_BATCH_MS": "10",
        "TAGWATCH_LOG_FORMAT": "json",
        **extra,
    }


class Service:
    """One `tagwatch backend ...` process; `port` is where its /readyz answers."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], port: int, logdir: Path):
        self.name = name
        self.args = args
        self.env = dict(env)
        self.port = port
        self.logfile = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        log = self.logfile.open("ab")
        self.proc = subprocess.Popen(
            [TAGWATCH, "backend", *self.args], env=self.env, stdout=log, stderr=log
        )
        return self

    def ready(self, timeout: float = 90) -> Service:
        """Wait until /readyz says ready (the process may take a while on a busy machine)."""
        wait_http_ok(self.name, self.proc, self.url + "/readyz", self.log, timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything, as a crash."""
        end(self.proc, signal.SIGKILL)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, as systemd stops a unit."""
        end(self.proc, signal.SIGTERM)
        self.proc = None

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")[-4000:] if self.logfile.exists() else ""

    def json_lines(self) -> list[dict[str, Any]]:
        """Every log line, each of which must be one JSON object."""
        return [json.loads(line) for line in self.logfile.read_text().splitlines() if line]


def api(env: Mapping[str, str], logdir: Path) -> Service:
    port = free_port()
    return Service("api", ["serve", "--port", str(port)], env, port, logdir)


def worker(env: Mapping[str, str], logdir: Path, index: int) -> Service:
    """Worker slot `index`; it listens on TAGWATCH_INGEST_HTTP_PORT + index."""
    port = free_port()
    return Service(
        f"ingest-{index}",
        ["ingest", "--workers", "1", "--index", str(index), "--client-id", f"test-ops-{index}"],
        {**env, "TAGWATCH_INGEST_HTTP_PORT": str(port - index)},
        port,
        logdir,
    )


class Prometheus:
    """Debian's prometheus on a free port, scraping the given jobs every second and
    evaluating tagwatch's shipped rules every second. Every rule's `for` is set to 0s:
    the expressions are what meet the real services here; how long each waits is checked
    by promtool against the same file (tagwatch-rules.test.yml)."""

    def __init__(self, workdir: Path, jobs: Mapping[str, list[str]]) -> None:
        self.workdir = workdir
        self.port = free_port()
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "0s"
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "1s",
            },
            "rule_files": [str(workdir / "rules.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in jobs.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.logfile = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        log = self.logfile.open("ab")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=log,
        )

        wait_http_ok("prometheus", self.proc, self.url + "/-/ready", self.log, 60)
        return self

    def __exit__(self, *exc: object) -> None:
        end(self.proc, signal.SIGTERM)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")[-4000:]

    def _get(self, path: str, **params: str) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=10)
        r.raise_for_status()
        return r.json()["data"]

    def targets_up(self) -> dict[str, str]:
        """scrape URL -> health ("up", "down", "unknown")."""
        return {t["scrapeUrl"]: t["health"] for t in self._get("/api/v1/targets")["activeTargets"]}

    def firing(self) -> set[str]:
        return {
            a["labels"]["alertname"]
            for a in self._get("/api/v1/alerts")["alerts"]
            if a["state"] == "firing"
        }

    def value(self, query: str) -> float | None:
        result = self._get("/api/v1/query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_firing(self, alert: str, timeout: float = 90) -> None:
        wait_for(f"{alert} firing", lambda: True if alert in self.firing() else None, timeout,
                 lambda: f"firing: {self.firing()}\ntargets: {self.targets_up()}")  # fmt: skip

    def wait_cleared(self, alert: str, timeout: float = 90) -> None:
        wait_for(f"{alert} cleared", lambda: True if alert not in self.firing() else None, timeout,
                 lambda: f"firing: {self.firing()}\ntargets: {self.targets_up()}")  # fmt: skip
