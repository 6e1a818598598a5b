"""A simulated day for the officers' flows: `tagwatch sim demo`'s own run and serving path
(sim/demo.py) — the dorset-iom-50 scenario's first day for a dozen subjects through the
fleet, home units, Mosquitto, ingest and the rules — served by a real uvicorn with the demo
logins. Nothing in it is hand-made: the alerts, positions, presence and device events are
what the running system stored for the simulator's people (exclusion entries, a strap cut,
curfew breaches, a home unit unplugged). Built once per test session (a minute or two on a
busy machine) and shared by the modules that read it."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from sim import demo
from sim import run as sim_run
from sim import scenario as scn
from sim.fleet import RunOptions
from tests.backend.api.conftest import Server

SUBJECTS = 12
SEED = 0
TOKEN_REUSE_S = 600


@dataclass
class SimDay:
    outcome: sim_run.Outcome
    served: demo.Served
    server: Server
    http: httpx.Client
    tokens: dict[str, tuple[float, dict[str, str]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def password(self, username: str) -> str:
        return next(x.password for x in self.served.logins if x.username == username)

    def token(self, username: str) -> dict[str, str]:
        """A bearer header for the user, signed in again when the last one is 10 minutes
        old (access tokens last 15)."""
        at, header = self.tokens.get(username, (0.0, {}))
        if time.monotonic() - at > TOKEN_REUSE_S:
            r = self.http.post(
                "/api/auth/token",
                data={"username": username, "password": self.password(username)},
            )
            assert r.status_code == 200, r.text
            header = {"Authorization": f"Bearer {r.json()['access_token']}"}
            self.tokens[username] = (time.monotonic(), header)
        return header

    def get(self, path: str, username: str = "iom.officer", **params: Any) -> Any:
        r = self.http.get(path, params=params, headers=self.token(username))
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()


def start(out: Path) -> SimDay:
    options = RunOptions(seed=SEED, subjects=SUBJECTS, days=1, hil=0, rules=True)
    console = Console(file=io.StringIO(), width=160)
    outcome = sim_run.run(scn.load(demo.SCENARIO), options, out, console, keep=True)
    try:
        served = demo.web_app(outcome, login_rate_per_minute=10_000)
        server = Server(served.app)
        server.start()
    except BaseException:
        outcome.close()
        raise
    return SimDay(outcome, served, server, httpx.Client(base_url=server.url, timeout=30))


def stop(day: SimDay) -> None:
    day.http.close()
    day.server.stop()
    day.outcome.close()
