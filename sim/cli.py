"""`tagwatch sim ...`"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Simulated tags and runs through the real stack.", no_args_is_help=True)


@app.command()
def demo(
    frames: Annotated[
        int, typer.Option(min=1, max=1000, help="frames the MicroPython tag sends")
    ] = 6,
) -> None:
    """A MicroPython tag's signed frames through a private Mosquitto, verified and acked."""
    from sim import demo as run_demo

    out = run_demo.run(frames)
    if len(out.accepted) != frames or out.acks_verified != frames or len(out.rejected) != 2:
        raise typer.Exit(1)
