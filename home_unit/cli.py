"""`tagwatch home-unit ...`: run the daemon, or look at its stored state."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import typer

from home_unit import logs, store
from home_unit.clock import Clock, SimClock
from home_unit.radio import Radio, RadioError
from home_unit.settings import HomeUnitSettings, SettingsError, load

app = typer.Typer(help="The home monitoring unit.", no_args_is_help=True, add_completion=False)

ConfigOption = typer.Option(..., "--config", "-c", help="settings file (.toml or .json)")


def _settings(config: Path) -> HomeUnitSettings:
    try:
        return load(config)
    except SettingsError as e:
        typer.echo(f"tagwatch home-unit: {e}", err=True)
        raise typer.Exit(2) from e


def build_radio(s: HomeUnitSettings, clock: Clock) -> Radio:
    if s.radio == "sim":
        from home_unit.sim_radio import SimRadio

        host, port = s.sim_address()
        return SimRadio(s.unit, host, port, clock)
    from home_unit.ble_radio import BleakRadio  # imports bleak (D-Bus) only on a real unit

    return BleakRadio(clock, adapter=s.ble_adapter, connect_timeout=s.ble_connect_timeout_s)


async def _serve(s: HomeUnitSettings) -> None:
    from home_unit.daemon import HomeUnit

    clock: Clock = SimClock() if s.clock == "sim" else Clock()
    unit = HomeUnit(s, build_radio(s, clock), clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await unit.run(stop)


@app.command()
def run(config: Path = ConfigOption) -> None:
    """Run the home unit daemon until SIGTERM/SIGINT."""
    s = _settings(config)
    logs.configure(s.log_level, s.log_format)
    try:
        s.key()
    except SettingsError as e:
        typer.echo(f"tagwatch home-unit: {e}", err=True)
        raise typer.Exit(2) from e
    try:
        asyncio.run(_serve(s))
    except RadioError as e:
        # Exit non-zero so that the service manager restarts it (deploy/: Restart=always).
        typer.echo(f"tagwatch home-unit: the {s.radio} radio failed: {e}", err=True)
        raise typer.Exit(1) from e


@app.command()
def status(config: Path = ConfigOption) -> None:
    """Print the stored state: queue depths, unreported overflow, configuration version."""
    s = _settings(config)
    if not s.state_db.exists():
        typer.echo(f"tagwatch home-unit: no state at {s.state_db} yet", err=True)
        raise typer.Exit(1)
    st = store.Store(s.state_db)
    try:
        cfg = st.config()
        out = {
            "unit": s.unit,
            "relay_queued": st.count(store.RELAY),
            "own_queued": st.count(store.OWN),
            "overflow_unreported": st.overflow_unreported(),
            "config_version": cfg[0] if cfg else None,
            "tags": {
                str(t): {"counter": v.counter, "state": v.state, "last_kept": v.last_kept}
                for t, v in st.tag_states().items()
            },
        }
    finally:
        st.close()
    typer.echo(json.dumps(out, indent=2))
