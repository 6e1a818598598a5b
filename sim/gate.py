"""The alert gate: what a scored run must achieve, over seeds nobody picked.

`failures()` is the gate's one definition (the CI test `tests/e2e/test_scenarios.py` and
`tagwatch sim gate` both use it): recall of 100 % for each type it requires, within each
type's latency limit (sim.score.CRITERIA), and at most 1 false alert per 100 tag-days over
every scored type. `commit_seeds()` derives the seeds from the date of the checkout's last
commit, so a developer cannot choose seeds by looking at results, yet a failure reproduces
from the same commit (`--seed` with the seed the report names). `run_seeds()` runs them, up
to `jobs` at once, each with a stack of its own.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console

from sim import score
from sim import truth as tr
from sim.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
FALSE_PER_100_TAG_DAYS = 1.0
HIL_SHARE = 0.1  # of the tags run under the micropython binary, with their home units
# What the gate requires to be detected, every episode, in time: every type the scorer has a
# criterion for (sim.score.CRITERIA).
MUST_DETECT: tuple[str, ...] = tuple(score.CRITERIA)


def failures(
    scores: dict[str, score.TypeScore], tag_days: float, must_detect: Iterable[str] = MUST_DETECT
) -> list[str]:
    """What the gate refuses, as readable reasons (empty: pass)."""
    out = []
    false = sum(s.false_alerts for s in scores.values())
    if false > tag_days * FALSE_PER_100_TAG_DAYS / 100:
        out.append(f"{false} false alerts in {tag_days:.1f} tag-days (limit 1 per 100)")
    for kind in must_detect:
        s = scores.get(kind)
        if s is not None and s.missed:
            out.append(f"{kind}: missed {s.missed}")
        if s is not None and s.late:
            out.append(f"{kind}: late {s.late}")
    return out


def hil_tags(subjects: int) -> int:
    """How many tags of a gated run are HIL tags (at least one)."""
    return max(1, round(subjects * HIL_SHARE))


def commit_date(root: Path = ROOT) -> date:
    """The committer date of the checkout's HEAD; today (UTC) outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%cs"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        return date.fromisoformat(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return datetime.now(UTC).date()


def commit_seeds(n: int = 3, day: date | None = None) -> list[int]:
    """n seeds from a date (default: the last commit's): the same all day, new the next."""
    day = day or commit_date()
    return [
        int.from_bytes(hashlib.sha256(f"{day.isoformat()}:{k}".encode()).digest()[:4], "big")
        for k in range(n)
    ]


@dataclass
class SeedResult:
    seed: int
    tag_days: float
    scores: dict[str, score.TypeScore]
    completeness_ok: bool

    @property
    def failures(self) -> list[str]:
        out = [] if self.completeness_ok else ["positions lost or doubled"]
        return out + failures(self.scores, self.tag_days)


@dataclass(frozen=True)
class GateRun:
    """What every seed of one gate run runs: the scenario, how many HIL tags, which part of
    it, where each seed's report goes (`out/seed-S`), the fleet's shards (None: the
    default, RunOptions.shards)."""

    scenario: Scenario
    hil: int
    out: Path
    from_hour: float = 0.0
    hours: float | None = None
    shards: int | None = None


def run_seed(run: GateRun, seed: int, console: Console | None = None) -> SeedResult:
    """One seed through the whole stack (sim.run.run), its report written and printed."""
    from sim import run as sim_run
    from sim.fleet import RunOptions

    opts = RunOptions(seed=seed, hil=run.hil, from_hour=run.from_hour, hours=run.hours)
    if run.shards is not None:
        opts.shards = run.shards
    outcome = sim_run.run(run.scenario, opts, run.out / f"seed-{seed}", console)
    comp = outcome.completeness
    return SeedResult(
        seed,
        float(outcome.report["tag_days"]),  # of the hours run, when a part of a day
        outcome.scores or {},
        comp is not None and comp.ok,
    )


def _seed_apart(run: GateRun, seed: int) -> tuple[SeedResult, str]:
    """run_seed in a process of its own: the result, and the report it printed as text (the
    seeds beside it would interleave their lines on one terminal)."""
    text = io.StringIO()
    result = run_seed(run, seed, Console(file=text, width=120))
    return result, text.getvalue()


def default_jobs(seeds: int) -> int:
    """Seeds at once by default: one a core. A seed's processes together keep less than a
    core busy (its lock-step waits on round trips between them), so two seeds on two cores
    overlap each other's waits (docs/simulator.md, "Seeds side by side")."""
    return max(1, min(seeds, os.cpu_count() or 1))


def run_seeds(
    run: GateRun, seeds: Sequence[int], jobs: int, echo: Callable[[str], None]
) -> list[SeedResult]:
    """Each seed's result, in the order of `seeds`. jobs 1: one after the other in this
    process (the report and progress on this terminal). More: up to `jobs` seeds at once,
    each in a spawned process of its own (a fresh interpreter, as `tagwatch sim run`; its
    broker, backend, units and HIL tags on free ports in a work folder of its own), its
    report passed to `echo` when it ends. A seed that raises stops the seeds not yet begun
    and raises once those under way have ended (their reports written)."""
    if jobs <= 1 or len(seeds) <= 1:
        return [run_seed(run, s) for s in seeds]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=spawn, max_tasks_per_child=1) as pool:
        futures = {pool.submit(_seed_apart, run, s): s for s in seeds}
        results: dict[int, SeedResult] = {}
        pending: set[Future[tuple[SeedResult, str]]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise RuntimeError(f"seed {futures[f]} failed to run") from f.exception()
                result, text = f.result()
                echo(f"seed {result.seed}:\n{text.strip()}")
                results[result.seed] = result
    return [results[s] for s in seeds]


def overall(results: Sequence[SeedResult]) -> list[str]:
    """The gate over several seeds: each seed's misses and late alerts, and false alerts per
    100 tag-days over all of them together."""
    out = []
    for r in results:
        out += [f"seed {r.seed}: {f}" for f in r.failures if "false alerts" not in f]
    days = sum(r.tag_days for r in results)
    false = sum(s.false_alerts for r in results for s in r.scores.values())
    if false > days * FALSE_PER_100_TAG_DAYS / 100:
        out.append(f"{false} false alerts in {days:.1f} tag-days over {len(results)} seeds")
    return out


def episodes_to_catch(truth: tr.TruthLog, kind: str, subjects: Iterable[int] | None = None) -> int:
    """How many episodes of `kind` (of these subjects) the truth requires an alert for (the
    gate means something only if there was something to catch)."""
    crit = {kind: score.CRITERIA[kind]}
    return score.score_alerts(truth, [], crit, subjects)[kind].episodes
