"""`tagwatch sim run`: a scenario through the real stack, scored, with a report and plots.

run() builds the fleet (sim.fleet), runs it with a progress bar, then scores:
- completeness from the backend's tables (always);
- alerts per type through an AlertSource when the run has one (by default the backend's
  alerts table, which the rules engine fills during the run; see docs/simulator.md).
It writes report.json, truth.json, map.png and timeline.png to the output folder and prints
a table. With keep=True the broker and backend stay up (the demo serves the API over them)
until the returned Outcome is closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sim import score
from sim import score_plots as plots
from sim import truth as tr
from sim.fleet import Fleet, RunOptions, RunResult, local_day
from sim.scenario import Scenario

AlertSourceFactory = Callable[[Fleet, RunResult], "score.AlertSource | None"]


@dataclass
class Outcome:
    result: RunResult
    completeness: score.Completeness | None
    scores: dict[str, score.TypeScore] | None
    alerts: list[score.Alert]
    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    fleet: Fleet | None = None

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.close()
            self.fleet = None


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The daemons' info logs would drown the progress bar; errors still show. The caller's
    logging comes back afterwards: a run is also a library call (the web tests' day, the
    demo), and a process-wide filter left behind silenced every later info line."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        yield
    finally:
        structlog.configure(**before)


def run(
    scenario: Scenario,
    options: RunOptions,
    out: Path,
    console: Console | None = None,
    alert_source: AlertSourceFactory | None = None,
    keep: bool = False,
    on_progress: Callable[[Fleet, int], None] | None = None,
) -> Outcome:
    """`on_progress(fleet, done_ms)` after each slice of simulated time: the fault tests
    (tests/e2e/test_failover.py) kill servers from it. With `keep`, the stack goes on
    serving after the run with the caller's logging."""
    with quiet_logs():
        return _run(scenario, options, out, console or Console(), alert_source, keep, on_progress)


def _run(
    scenario: Scenario,
    options: RunOptions,
    out: Path,
    console: Console,
    alert_source: AlertSourceFactory | None,
    keep: bool,
    on_progress: Callable[[Fleet, int], None] | None,
) -> Outcome:
    out.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(scenario, options)
    try:
        with console.status("starting broker, backend, home units, HIL tags..."):
            fleet.setup()
        sim = fleet.sim
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[clock]}"),
            TextColumn("frames {task.fields[published]}, beacons {task.fields[beacons]}"),
            TimeElapsedColumn(),
            console=console,
            transient=not console.is_terminal,
        ) as bar:
            task = bar.add_task(
                f"{sim.scenario.name} x{len(sim.subjects)}",
                total=sim.end_ms - sim.start_ms + options.drain_s * 1000,
                clock="",
                published=0,
                beacons=0,
            )

            def progress(done: int, total: int, live: dict[str, Any]) -> None:
                bar.update(
                    task,
                    completed=done,
                    total=total,
                    clock=local_day(sim, fleet.begin_ms + done),
                    **live,
                )
                if on_progress is not None:
                    on_progress(fleet, done)

            result = fleet.run(progress)
        window = run_window(result)
        if window is not None:  # part of a day: score against what happened in it only
            clipped = clip_truth(sim.truth, *window)
            result = replace(result, sim=replace(sim, truth=clipped))
        comp = None
        if fleet.backend is not None:
            comp = score.completeness(result, fleet.backend.engine)
        if alert_source is not None:
            source = alert_source(fleet, result)
        elif fleet.backend is not None and fleet.subject_of:
            source = score.TableAlertSource(fleet.backend.engine, fleet.subject_of)
        else:
            source = None
        alerts: list[score.Alert] = source.alerts() if source is not None else []
        scores = score.score_alerts(result.sim.truth, alerts) if source is not None else None
        note = (
            ""
            if source is not None
            else (
                "no alert source: the run had no backend or its rules were off "
                "(RunOptions.rules; docs/simulator.md, Scoring)"
            )
        )
        rep = score.report(result, comp, scores, note)
        rep["stack"] = fleet.stack()
        if window is not None:
            _per_window(rep, result, scores, window)
        if isinstance(source, score.TableAlertSource):
            rep["other_alerts"] = dict(source.unmapped)  # types with no truth to score
        paths = {"report": out / "report.json", "truth": out / "truth.json"}
        paths["report"].write_text(json.dumps(rep, indent=1), encoding="utf-8")
        result.sim.truth.save(paths["truth"])
        if fleet.backend is not None:
            trails = plots.stored_trails(result, fleet.backend.engine)
            paths["map"] = plots.draw_map(result, trails, alerts, out / "map.png")
        paths["timeline"] = plots.draw_timeline(result, alerts, out / "timeline.png")
        print_report(console, rep)
        outcome = Outcome(result, comp, scores, alerts, rep, paths, fleet if keep else None)
    except BaseException:
        fleet.close()
        raise
    if not keep:
        fleet.close()
    return outcome


def run_window(result: RunResult) -> tuple[int, int] | None:
    """The simulated span a partial run covered (RunOptions.from_hour/hours): its start to
    where it stopped, drain included (tags move and rules run in the drain too); None for
    a run of the scenario's whole days."""
    o = result.options
    if o.hours is None and not o.from_hour:
        return None
    start = result.sim.start_ms + int(o.from_hour * 3_600_000)
    return start, start + result.sim_ms


def clip_truth(truth: tr.TruthLog, start_ms: int, end_ms: int) -> tr.TruthLog:
    """The truth of [start_ms, end_ms): episodes outside it dropped, those crossing its
    edges cut to it (marked ongoing_at_end when cut at the end, as sim.truth does)."""
    out = []
    for e in truth.episodes:
        if e.end_ms <= start_ms or e.start_ms >= end_ms:
            continue
        detail = dict(e.detail)
        if e.end_ms > end_ms:
            detail["ongoing_at_end"] = True
        out.append(
            replace(e, start_ms=max(e.start_ms, start_ms), end_ms=min(e.end_ms, end_ms),
                    detail=detail)
        )  # fmt: skip
    return tr.TruthLog(out, start_ms, end_ms)


def _per_window(
    rep: dict[str, Any],
    result: RunResult,
    scores: dict[str, score.TypeScore] | None,
    window: tuple[int, int],
) -> None:
    """score.report counts the scenario's whole days; a partial run's rates are per the
    tag-days it simulated."""
    days = len(result.sim.subjects) * (window[1] - window[0]) / 86_400_000
    rep["tag_days"] = days
    rep["tag_days_per_wall_minute"] = round(days / max(result.wall_s, 1e-9) * 60, 2)
    rep["window_ms"] = list(window)
    if scores is not None:
        rep["alerts"] = {k: s.to_json(days) for k, s in scores.items()}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} s"


def print_report(console: Console, rep: dict[str, Any]) -> None:
    console.print(
        f"{rep['scenario']} (seed {rep['seed']}): {rep['subjects']} tags "
        f"({rep['hil_tags']} under MicroPython), {rep['tag_days']:.1f} tag-days in "
        f"{rep['wall_s']:.0f} s wall = {rep['tag_days_per_wall_minute']:.1f} tag-days/min"
    )
    c = rep["completeness"]
    if c is not None:
        t = Table(title="data completeness", show_header=True)
        for col in ("", "generated", "stored", "still on tags", "lost", "doubled"):
            t.add_column(col, justify="right")
        t.add_row(
            "frames",
            str(c["frames_sealed"]),
            str(c["frames_stored"]),
            str(c["frames_on_tags"]),
            str(c["frames_lost"]),
            str(c["frames_unknown"]),
        )
        t.add_row(
            "positions",
            str(c["positions_generated"]),
            str(c["positions_stored"]),
            str(c["positions_on_tags"]),
            str(c["positions_lost"]),
            str(c["positions_doubled"] + c["positions_mismatched"]),
        )
        console.print(t)
    a = rep["alerts"]
    if a is None:
        console.print(f"[yellow]alerts not scored:[/] {rep['alerts_note']}")
        return
    t = Table(title="alerts against ground truth")
    for col in ("type", "episodes", "detected", "alerts", "recall", "precision", "excused",
                "false/100 tag-days", "latency p50", "p95"):  # fmt: skip
        t.add_column(col, justify="right")
    for k, s in a.items():
        t.add_row(
            k,
            str(s["episodes"]),
            str(s["detected"]),
            str(s["alerts"]),
            _pct(s["recall"]),
            _pct(s["precision"]),
            str(s["excused_alerts"]),
            f"{s['false_per_100_tag_days']:.2f}",
            _s(s["latency_p50_s"]),
            _s(s["latency_p95_s"]),
        )
    console.print(t)
