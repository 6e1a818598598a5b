"""`tagwatch sim ...`"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sim.scenario import Scenario

app = typer.Typer(help="Simulated tags and runs through the real stack.", no_args_is_help=True)

# `sim run` and `sim gate` both take it.
ShardsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        help="processes the fleet's firmware runs in, lock-stepped with the stack "
        "(default: RunOptions.shards; docs/simulator.md, Speed)",
    ),
]


def _scenario(name: str, command: str) -> Scenario:
    """The scenario `name` names, or exit 2 with the reason it cannot be used."""
    from sim import scenario as scn

    try:
        return scn.load(name)
    except scn.ScenarioError as exc:
        typer.echo(f"tagwatch sim {command}: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    scenario: Annotated[
        str, typer.Argument(help="scenario name in sim/scenarios/ or a path")
    ] = "dorset-iom-50",
    subjects: Annotated[
        int | None, typer.Option(min=1, help="subjects (default: the scenario's)")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="days to simulate")] = 1,
    hours: Annotated[
        float | None,
        typer.Option(min=0.1, max=24, help="simulate only this many hours of the first day"),
    ] = None,
    hil: Annotated[int, typer.Option(min=0, help="tags run under the micropython binary")] = 3,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same truth")] = 0,
    out: Annotated[str, typer.Option(help="folder for report.json and the plots")] = "build/demo",
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="API port on 127.0.0.1 (default 8080 if free; 0: any)"),
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="serve the API and web app after the run, until Ctrl-C")
    ] = True,
) -> None:
    """The demo: a scenario through the whole stack with the rules on, scored, then the API
    and web app served with demo logins for two units until Ctrl-C."""
    from pathlib import Path

    from sim import demo as sim_demo

    opts = sim_demo.DemoOptions(
        scenario=scenario, subjects=subjects, days=days, hours=hours, hil=hil, seed=seed,
        out=Path(out), port=port, serve=serve,
    )  # fmt: skip
    try:
        sim_demo.run(opts)
    except sim_demo.DemoError as exc:
        typer.echo(f"tagwatch sim demo: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("tagwatch sim demo: interrupted; everything it started is stopped", err=True)
        raise typer.Exit(130) from None
    except sim_demo.Stopped:
        typer.echo("tagwatch sim demo: terminated; everything it started is stopped", err=True)
        raise typer.Exit(143) from None


@app.command("run")
def run_scenario(
    scenario: Annotated[str, typer.Argument(help="scenario name in sim/scenarios/ or a path")],
    subjects: Annotated[
        int | None, typer.Option(min=1, help="subjects (default: the scenario's)")
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, max=366, help="days to simulate")] = None,
    hil: Annotated[int, typer.Option(min=0, help="tags run under the micropython binary")] = 2,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same truth")] = 0,
    out: Annotated[str, typer.Option(help="folder for report.json, plots")] = "build/sim-run",
    rules: Annotated[
        bool, typer.Option(help="configure subjects and run the backend's rules (alerts)")
    ] = True,
    ha: Annotated[
        bool,
        typer.Option(
            help="on the HA stack: PostgreSQL under Patroni with a synchronous replica, "
            "two brokers, two ingest workers (docs/scaling.md)"
        ),
    ] = False,
    from_hour: Annotated[
        float, typer.Option(min=0, max=23.9, help="start this many hours into the first day")
    ] = 0.0,
    hours: Annotated[
        float | None,
        typer.Option(min=0.1, max=24, help="simulate only this many hours (then the drain)"),
    ] = None,
    shards: ShardsOption = None,
) -> None:
    """Run a scenario through firmware, home units, Mosquitto and the backend; score it."""
    from pathlib import Path

    from sim import run as sim_run
    from sim.fleet import RunOptions

    sc = _scenario(scenario, "run")
    opts = RunOptions(
        seed=seed, subjects=subjects, days=days, hil=hil, rules=rules, ha=ha,
        from_hour=from_hour, hours=hours,
    )  # fmt: skip
    if shards is not None:
        opts.shards = shards
    outcome = sim_run.run(sc, opts, Path(out))
    for name, path in outcome.paths.items():
        typer.echo(f"{name}: {path}")
    comp = outcome.completeness
    if comp is not None and not comp.ok:
        raise typer.Exit(1)


@app.command()
def world(
    scenario: Annotated[str, typer.Argument(help="scenario name in sim/scenarios/ or a path")],
    seed: Annotated[int, typer.Option(help="random seed: same seed, same world")] = 0,
    days: Annotated[
        int | None, typer.Option(min=1, max=366, help="days to simulate (default: the scenario's)")
    ] = None,
    out: Annotated[str, typer.Option(help="directory for summary.json, truth.json, map.png")] = (
        "build/sim-world"
    ),
) -> None:
    """Generate a scenario's world, movements and ground truth; write a summary and a map."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from sim import generate as gen
    from sim import world_map

    sc = _scenario(scenario, "world")
    sim = gen.generate(sc, seed=seed, days=days)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = sim.summary()
    (folder / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    sim.truth.save(folder / "truth.json")
    png = world_map.draw(sim, folder / "map.png")
    table = Table(title=f"{sc.name}, seed {seed}: ground truth episodes")
    table.add_column("type")
    table.add_column("episodes", justify="right")
    for kind, n in summary["truth"].items():
        table.add_row(kind, str(n))
    console = Console()
    console.print(
        f"{summary['subjects']} subjects, {summary['days']} day(s) from {summary['start']}; "
        f"{summary['world']['road_nodes']} road nodes, {summary['world']['road_km']} km of road"
    )
    console.print(table)
    console.print(f"summary: {folder / 'summary.json'}\ntruth: {folder / 'truth.json'}\nmap: {png}")


@app.command()
def oncall(
    scenario: Annotated[
        str, typer.Argument(help="scenario name in sim/scenarios/ or a path")
    ] = "night-strap-cut",
    subjects: Annotated[
        int | None, typer.Option(min=1, help="subjects (default: the scenario's)")
    ] = None,
    hours: Annotated[
        float, typer.Option(min=0.1, max=24, help="simulate this many hours of the first day")
    ] = 1.0,
    escalate_after: Annotated[
        int, typer.Option(min=30, max=86_400, help="seconds before escalating")
    ] = 300,
    ack_after: Annotated[
        str,
        typer.Option(
            help="each on-call officer in rank order: seconds from reading a page to "
            "acknowledging it, or 'never'"
        ),
    ] = "never,120",
    seed: Annotated[int, typer.Option(help="random seed: same seed, same truth")] = 0,
    out: Annotated[str, typer.Option(help="file for the score (JSON)")] = "build/oncall.json",
) -> None:
    """A night on call: the scenario through the whole stack with the notification
    dispatcher; simulated officers read their e-mail and pushes and acknowledge (or not).
    Prints time to first notification and to acknowledgement (docs/simulator.md)."""
    import json
    from pathlib import Path

    from sim import oncall as sim_oncall
    from sim.fleet import Fleet, RunOptions
    from sim.run import quiet_logs

    sc = _scenario(scenario, "oncall")
    try:
        officers = sim_oncall.parse_officers(ack_after)
    except ValueError as exc:
        typer.echo(f"tagwatch sim oncall: {exc}", err=True)
        raise typer.Exit(2) from None
    fleet = Fleet(sc, RunOptions(seed=seed, subjects=subjects, hours=hours, drain_s=60))
    with quiet_logs():
        try:
            fleet.setup()
            night = sim_oncall.OnCall(fleet, officers, escalate_after_s=escalate_after)
            try:
                fleet.run()
                report = night.score()
            finally:
                night.close()
        finally:
            fleet.close()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    for line in sim_oncall.summary_lines(report):
        typer.echo(line)
    typer.echo(f"score: {path}")


@app.command()
def gate(
    scenario: Annotated[
        str, typer.Argument(help="scenario name in sim/scenarios/ or a path")
    ] = "gate-week",
    seeds: Annotated[int, typer.Option(min=1, help="seeds from the last commit's date")] = 3,
    seed: Annotated[
        list[int] | None, typer.Option(help="run these seeds instead (repeatable)")
    ] = None,
    hil: Annotated[
        int | None,
        typer.Option(min=0, help="tags under the micropython binary (default: 10 % of them)"),
    ] = None,
    from_hour: Annotated[
        float, typer.Option(min=0, help="start this many hours into the scenario")
    ] = 0.0,
    hours: Annotated[
        float | None,
        typer.Option(min=0.1, help="run only this many hours, scored on what happened in them"),
    ] = None,
    out: Annotated[str, typer.Option(help="folder for each seed's report")] = "build/sim-gate",
    shards: ShardsOption = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="seeds run at once, each with its own stack (default: one a core)",
        ),
    ] = None,
) -> None:
    """The alert gate: the scenario through the whole stack for each seed, scored; exit
    status 1 on a missed or late alert, more than 1 false alert per 100 tag-days over all
    seeds, or a position lost or doubled (docs/simulator.md, "Scoring")."""
    from pathlib import Path

    from sim import gate as sim_gate
    from sim import scenario as scn

    try:
        sc = scn.load(scenario)
    except scn.ScenarioError as exc:
        typer.echo(f"tagwatch sim gate: {exc}", err=True)
        raise typer.Exit(2) from None
    chosen = list(seed) if seed else sim_gate.commit_seeds(seeds)
    twice = sorted({s for s in chosen if chosen.count(s) > 1})
    if twice:
        # Its tag-days would count twice against the false alerts, its report overwritten.
        typer.echo(f"tagwatch sim gate: seed {twice[0]} given more than once", err=True)
        raise typer.Exit(2)
    typer.echo(f"seeds: {', '.join(map(str, chosen))}")
    n_hil = sim_gate.hil_tags(sc.population.subjects) if hil is None else hil
    run = sim_gate.GateRun(sc, n_hil, Path(out), from_hour, hours, shards)
    n_jobs = sim_gate.default_jobs(len(chosen)) if jobs is None else jobs
    if n_jobs > 1 and len(chosen) > 1:
        typer.echo(f"{min(n_jobs, len(chosen))} seeds at a time; each one's report when it ends")
    results = sim_gate.run_seeds(run, chosen, n_jobs, typer.echo)
    failed = sim_gate.overall(results)
    for f in failed:
        typer.echo(f"FAIL {f}")
    if failed:
        raise typer.Exit(1)
    typer.echo(f"gate passed over {len(results)} seeds")


@app.command()
def bilateral(
    pairs: Annotated[int, typer.Option(min=1, max=1000, help="perpetrator-victim pairs")] = 20,
    days: Annotated[int, typer.Option(min=1, max=60, help="days to simulate")] = 5,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same truth")] = 0,
    out: Annotated[str, typer.Option(help="file for the report (JSON)")] = (
        "build/sim-bilateral/report.json"
    ),
    only: Annotated[
        list[int] | None,
        typer.Option(help="run only this pair (repeatable), as it is in the whole scenario"),
    ] = None,
) -> None:
    """The bilateral scenario: tags and victims' devices with routines and injected
    approaches through the proximity rule; prints recall, false alerts per 100 pair-days and
    latency (sim/bilateral.py)."""
    from pathlib import Path

    from sim import bilateral as bl

    try:
        prm = bl.BilateralParams(pairs=pairs, days=days, seed=seed, only=tuple(only or ()))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--only") from e
    text = bl.main(prm)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    typer.echo(text)
