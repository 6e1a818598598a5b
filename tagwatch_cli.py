"""The `tagwatch` command: one typer app whose sub-commands come from each component."""

from __future__ import annotations

import typer

from backend.cli import app as backend_app
from home_unit.cli import app as home_unit_app
from hw.cli import app as hw_app
from sim.cli import app as sim_app

# Help as markdown (the components' apps take it from here): a docstring's paragraph is
# reflowed, not shown with the source's line breaks, and `code` spans read as code.
app = typer.Typer(
    rich_markup_mode="markdown",
    help="tagwatch: open electronic monitoring for GPS/RF ankle tags.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(backend_app, name="backend")
app.add_typer(home_unit_app, name="home-unit")
app.add_typer(hw_app, name="hw")
app.add_typer(sim_app, name="sim")
