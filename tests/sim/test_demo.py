"""`tagwatch sim demo` (make demo) as a user runs it: the command in a subprocess, a short
run through the whole stack with the rules on and a tag under the real micropython binary,
its printed scores, plots and logins; then the API it serves, signed into with a printed
login, and its shutdown on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sim.monitoring import UNIT_NAME

TAGWATCH = str(Path(sys.executable).with_name("tagwatch"))
STRAP_CUT = str(Path(__file__).with_name("demo_strap_cut.toml"))
OTHER_UNIT = "MOSOVO (demo)"
LOGIN = re.compile(r"^\s+(\S+)\s+(\S+)\s+\((\w+), (.+)\)$")
PNG = b"\x89PNG\r\n\x1a\n"
RUN_TIMEOUT_S = 300  # a loaded 2-core machine; the runs below take ~20-40 s when idle


def env() -> dict[str, str]:
    # Wide enough that rich does not fold the tables; unbuffered so lines arrive as printed.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}


def logins(lines: list[str]) -> dict[str, tuple[str, str, str]]:
    """username -> (password, role, unit) from the demo's login lines."""
    out = {}
    for line in lines:
        m = LOGIN.match(line)
        if m:
            out[m[1]] = (m[2], m[3], m[4])
    return out


def printed_paths(lines: list[str]) -> dict[str, Path]:
    out = {}
    for line in lines:
        name, sep, rest = line.partition(": ")
        if sep and name in ("report", "truth", "map", "timeline"):
            out[name] = Path(rest.strip())
    return out


@pytest.mark.broker
@pytest.mark.micropython
def test_demo_without_serving_prints_scores_plots_and_logins(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [TAGWATCH, "sim", "demo", "--subjects", "3", "--hours", "2", "--hil", "1",
         "--no-serve", "--out", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    lines = text.splitlines()
    assert "data completeness" in text and "alerts against ground truth" in text, text
    assert "dorset-iom-50 (seed 0): 3 tags (1 under MicroPython)" in text
    # The score table is the report's: the rules were on, the alerts scored.
    report = json.loads((out / "report.json").read_text())
    assert report["alerts"] is not None, report["alerts_note"]
    assert {"curfew_breach", "strap_cut"} <= set(report["alerts"])
    for kind in report["alerts"]:
        assert re.search(rf"^\W*{kind}\W", text, re.M), f"no row for {kind}"
    assert report["completeness"]["ok"] and report["completeness"]["positions_stored"] > 0
    assert report["hil_tags"] == 1 and report["subjects"] == 3
    # Two hours of three tags (and the drain), not the whole day.
    assert 3 * 2 / 24 <= report["tag_days"] < 3 * 3.5 / 24
    paths = printed_paths(lines)
    assert set(paths) == {"report", "truth", "map", "timeline"}
    for name in ("map", "timeline"):
        data = paths[name].read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000, name
    who = logins(lines)
    assert {u for _, _, u in who.values()} == {UNIT_NAME, OTHER_UNIT}
    assert who["iom.officer"][1:] == ("officer", UNIT_NAME)
    assert who["mosovo.officer"][1:] == ("officer", OTHER_UNIT)
    assert all(len(pw) >= 12 for pw, _, _ in who.values())
    assert "Web application" not in text  # nothing served


class Demo:
    """The demo command running in a subprocess, its output read line by line."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [TAGWATCH, "sim", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in x for x in self.lines):
            try:
                line = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in time:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"exited before {text!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)

    def children(self) -> set[int]:
        """Processes the demo started (the broker, the micropython tag)."""
        out: set[int] = set()
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            out.update(int(x) for x in (task / "children").read_text().split())
        return out

    def drain(self) -> None:
        while (line := self._q.get(timeout=10)) is not None:
            self.lines.append(line)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(
        [STRAP_CUT, "--hours", "1.5", "--hil", "1", "--port", "0", "--out", str(tmp_path / "o")]
    )
    yield d
    if d.proc.poll() is None:  # the test failed before stopping it
        d.proc.send_signal(signal.SIGINT)
        try:
            d.proc.wait(60)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()


def sign_in(http: httpx.Client, who: dict[str, tuple[str, str, str]], user: str) -> dict[str, str]:
    r = http.post("/api/auth/token", data={"username": user, "password": who[user][0]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.mark.broker
@pytest.mark.micropython
def test_demo_serves_the_run_to_officers_and_stops_on_ctrl_c(demo: Demo) -> None:
    demo.wait_for("Serving until Ctrl-C.", RUN_TIMEOUT_S)
    web = next(x for x in demo.lines if x.startswith("Web application: "))
    # The demo opens on a day with alerts waiting (the strap cut's, at least).
    waiting = next(x for x in demo.lines if x.startswith("Needs attention: "))
    assert int(waiting.split()[2]) >= 1, waiting
    base = web.removeprefix("Web application: ").removesuffix("/web/")
    port = int(base.rsplit(":", 1)[1])
    assert base == f"http://127.0.0.1:{port}"
    who = logins(demo.lines)
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/api/subjects").status_code == 401
        iom = sign_in(http, who, "iom.officer")
        subjects = http.get("/api/subjects", headers=iom).json()
        refs = sorted(s["reference"] for s in subjects)
        assert refs == ["SIM-0-00000", "SIM-0-00001", "SIM-0-00002"]
        ids = {s["reference"]: s["id"] for s in subjects}
        # Everyone's last position came through the stack.
        live = http.get("/api/web/live", headers=iom).json()
        assert {s["reference"] for s in live["subjects"]} == set(refs)
        assert all(s["position"] is not None for s in live["subjects"]), live["subjects"]
        # The strap cut on subject 0's tag (the one under micropython) raised an alert.
        alerts = http.get("/api/alerts", headers=iom).json()
        strap = [a for a in alerts if a["type"] == "strap_tamper"]
        assert [a["subject_id"] for a in strap] == [ids["SIM-0-00000"]], alerts
        trail = http.get(
            f"/api/subjects/{ids['SIM-0-00000']}/trail",
            params={"purpose": "demo test: the simulated trail"},
            headers=iom,
        ).json()
        assert sum(f["geometry"]["type"] == "Point" for f in trail["features"]) >= 1
        assert http.get("/api/web/world", headers=iom).status_code == 200
        # Backend now carries on from the end of the simulated run (1.5 h and the drain
        # after the strap cut at 00:20), not from today's date, and it moves.
        now = [http.get("/api/web/config", headers=iom).json()["now"] for _ in range(2)]
        assert strap[0]["start"] + 3600 < now[0] < now[1] < strap[0]["start"] + 3 * 3600
        assert http.get("/web/").status_code == 200
        # The other unit sees the two shared subjects and their alerts, not the third.
        mosovo = sign_in(http, who, "mosovo.officer")
        theirs = http.get("/api/subjects", headers=mosovo).json()
        assert sorted(s["reference"] for s in theirs) == ["SIM-0-00000", "SIM-0-00001"]
        seen = http.get("/api/alerts", headers=mosovo).json()
        assert [a["type"] for a in seen] == ["strap_tamper"]
        hidden = http.get(f"/api/subjects/{ids['SIM-0-00002']}", headers=mosovo)
        assert hidden.status_code == 404
    started = demo.children()
    assert started, "the broker and the micropython tag should be running"
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(60) == 0
    demo.drain()
    assert demo.lines[-1].startswith("stopped:"), demo.lines[-3:]
    assert not any("Traceback" in x for x in demo.lines)
    # The broker and the tag were stopped and reaped, not orphaned. Multiprocessing's
    # resource tracker (started with the run's ingest and home-unit processes) leaves on its
    # own once the demo has gone: waited for, bounded.
    for pid in started:
        assert gone(pid), (pid, cmdline(pid))
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass


def test_demo_refuses_a_busy_port_and_an_unknown_scenario_before_running() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [TAGWATCH, "sim", "demo", "--port", str(port)],
            capture_output=True, text=True, timeout=120, env=env(),
        )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "data completeness" not in proc.stdout  # refused before anything ran
    proc = subprocess.run(
        [TAGWATCH, "sim", "demo", "no-such-scenario", "--no-serve"],
        capture_output=True, text=True, timeout=120, env=env(),
    )  # fmt: skip
    assert proc.returncode == 2 and "no scenario 'no-such-scenario'" in proc.stderr, proc.stderr
