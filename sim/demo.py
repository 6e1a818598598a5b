"""`tagwatch sim demo` (`make demo`): the product end to end on embedded defaults.

A scenario (dorset-iom-50 by default: about 50 subjects, one simulated day, a few tags under
the real micropython binary) runs through the whole stack exactly as `tagwatch sim run`
does (sim/run.py): a private Mosquitto, the backend's ingest and rules on SQLite in a
temporary folder with a generated server key, home units, fleet and HIL tags. The score
table and the plots' paths are printed. Then, over the same database, the API and the
officers' web application are served by uvicorn on 127.0.0.1, with demo logins for two
units (backend/web/demo_accounts.py): the simulator's unit, which owns every simulated
subject (sim/monitoring.py registers them), and a second unit that sees two of them through
a share. Ctrl-C (or SIGTERM) stops the server, the broker, the home units and the tags and
removes the temporary folder.

While it serves, backend "now" carries on from the end of the simulated run at wall-clock
pace (ContinuingClock), so the web app's freshness, trail windows, token lifetimes and the
login rate limit behave as in a live deployment whose last data came in moments ago.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from sim import monitoring
from sim import run as sim_run
from sim import scenario as scn
from sim.fleet import RunOptions

SCENARIO = "dorset-iom-50"
HIL_TAGS = 3
DEFAULT_PORT = 8080  # backend.settings.Settings.api_port; the demo falls back to a free one
HOST = "127.0.0.1"


class DemoError(RuntimeError):
    """A reason the demo cannot start (bad scenario, port in use); exit status 2."""


@dataclass
class DemoOptions:
    scenario: str = SCENARIO
    subjects: int | None = None  # None: the scenario's
    days: int = 1
    hours: float | None = None  # part of the first day only (quick runs, tests)
    hil: int = HIL_TAGS
    seed: int = 0
    out: Path = Path("build/demo")
    port: int | None = None  # None: 8080 if free, else any free port; 0: any free port
    serve: bool = True


class ContinuingClock:
    """Backend now after a simulated run: the run's last instant, moving on in real time."""

    def __init__(self, start: float) -> None:
        self._start = start
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._t0)


class Stopped(Exception):
    """SIGTERM before the demo was serving: the run was unwound and everything stopped."""


@dataclass
class _Control:
    stop: threading.Event
    serving: bool = False


def listen(port: int | None) -> socket.socket:
    """The API's listening socket, bound before the run so a busy port fails at once."""

    def bound(p: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, p))
        except OSError:
            s.close()
            raise
        s.listen(128)
        return s

    if port is None:
        try:
            return bound(DEFAULT_PORT)
        except OSError:
            return bound(0)
    try:
        return bound(port)
    except OSError as exc:
        raise DemoError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from None


def run(opts: DemoOptions, console: Console | None = None) -> None:
    """Run the scenario, print the scores and plots, then (opts.serve) serve the API and web
    app until Ctrl-C or SIGTERM. Raises DemoError for bad input or a busy port."""
    console = console or Console()
    try:
        sc = scn.load(opts.scenario)
    except scn.ScenarioError as exc:
        raise DemoError(str(exc)) from None
    sock = listen(opts.port) if opts.serve else None
    ctl = _Control(threading.Event())
    previous = _signals(ctl) if threading.current_thread() is threading.main_thread() else None
    try:
        _run(opts, sc, console, sock, ctl)
    finally:
        if sock is not None:
            sock.close()
        if previous is not None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _signals(ctl: _Control) -> dict[int, Any]:
    """Ctrl-C and SIGTERM: during the run they unwind it (sim.run closes the fleet on the
    way out); while serving they ask the serving loop to stop everything in order."""

    def handler(sig: int, frame: FrameType | None) -> None:
        if ctl.serving and not ctl.stop.is_set():
            ctl.stop.set()
            return
        if sig == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _run(
    opts: DemoOptions,
    sc: scn.Scenario,
    console: Console,
    sock: socket.socket | None,
    ctl: _Control,
) -> None:
    options = RunOptions(
        seed=opts.seed,
        subjects=opts.subjects,
        days=opts.days,
        hours=opts.hours,
        hil=opts.hil,
        rules=True,
    )
    with sim_run.quiet_logs():  # the served stack's info lines would bury the demo's console
        outcome = sim_run.run(sc, options, opts.out, console, keep=True)
        try:
            _serve(outcome, console, sock, ctl)
        finally:
            outcome.close()
    if sock is not None:
        console.print("stopped: API, ingest, broker, home units and tags")


@dataclass
class Served:
    """What `make demo` serves over a kept run: the app (its clock carrying on from the
    run's end) and the demo logins."""

    app: Any
    clock: ContinuingClock
    logins: list[Any]


def web_app(outcome: sim_run.Outcome, **settings: Any) -> Served:
    """The API and web app over a kept run's database, the simulator's world as the map's
    base layer, and demo logins for two units (the browser tests serve the same, with
    `settings` overriding the backend's: they sign in more often than a person would)."""
    from backend.api.app import create_app
    from backend.web.demo_accounts import seed_demo_accounts
    from backend.web.settings import WebSettings
    from backend.web.world_layer import write_world_layer

    fleet = outcome.fleet
    assert fleet is not None and fleet.backend is not None  # run(keep=True) with a backend
    backend = fleet.backend
    layer = Path(backend.settings.data_dir) / "world.geojson"
    world = write_world_layer(fleet.sim.world, layer)
    clock = ContinuingClock(backend.clock.now())
    app = create_app(backend.settings.model_copy(update=settings), clock, backend.engine)
    app.state.tagwatch_web = WebSettings(world_layer=world)
    logins = seed_demo_accounts(
        backend.engine,
        app.state.tagwatch.passwords,
        clock.now(),
        owner_unit=monitoring.UNIT_NAME,
    )
    return Served(app, clock, logins)


def open_alerts(outcome: sim_run.Outcome) -> int:
    """How many of the run's alerts are open: what the demo's officers start the day with."""
    from sqlalchemy import func, select

    from backend.storage.schema import alerts

    assert outcome.fleet is not None and outcome.fleet.backend is not None
    with outcome.fleet.backend.engine.connect() as conn:
        q = select(func.count()).select_from(alerts).where(alerts.c.state == "open")
        return int(conn.execute(q).scalar_one())


def _serve(
    outcome: sim_run.Outcome,
    console: Console,
    sock: socket.socket | None,
    ctl: _Control,
) -> None:
    import uvicorn

    from backend.api.routes.web import LEAFLET_DIR
    from backend.api.sse import SHUTDOWN_GRACE_S
    from backend.web.demo_accounts import format_logins

    for name, path in outcome.paths.items():
        console.print(f"{name}: {path}", markup=False, highlight=False, soft_wrap=True)
    with console.status("creating demo logins..."):
        served = web_app(outcome)
    logins = served.logins
    app = served.app
    if sock is None:
        console.print("Demo logins (--no-serve: the API is not started):")
        for line in format_logins(logins, "http://" + HOST)[1:]:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        app,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    server = uvicorn.Server(config)
    # On a thread, so uvicorn does not take the process's signals: the demo's handlers stop
    # the server and then everything else, in order.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DemoError("the API server did not start")
        time.sleep(0.05)
    for line in format_logins(logins, url):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"API: {url}/api/docs", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"Needs attention: {open_alerts(outcome)} open alerts from the simulated day "
        "(officers and supervisors see them first after signing in)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if not LEAFLET_DIR.is_dir():
        console.print(f"[yellow]the web app's map needs Leaflet in {LEAFLET_DIR}: run make setup")
    console.print("Serving until Ctrl-C.")
    ctl.serving = True
    try:
        while not ctl.stop.wait(0.5):
            if not thread.is_alive():
                raise DemoError("the API server stopped unexpectedly")
    finally:
        console.print("stopping...")
        server.should_exit = True
        thread.join(15)
