"""`tagwatch hw ...`: tools for hardware engineers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from firmware import frame as fr

app = typer.Typer(help="Hardware engineers' tools.", no_args_is_help=True)


def _read_key(key_hex: str | None, key_file: Path | None) -> bytes | None:
    if key_file is not None:
        return bytes.fromhex(key_file.read_text().strip())
    if key_hex is not None:
        return bytes.fromhex(key_hex)
    return None


@app.command()
def decode(
    frame_hex: Annotated[str, typer.Argument(help="the frame as hex, or @FILE of hex or bytes")],
    key_file: Annotated[
        Path | None, typer.Option(help="file holding the device key as hex")
    ] = None,
    key_hex: Annotated[
        str | None,
        typer.Option("--key", envvar="TAGWATCH_KEY", help="device key as hex (prefer --key-file)"),
    ] = None,
) -> None:
    """Decode a frame captured from a tag or the broker; verify its MAC when given the key."""
    console = Console()
    try:
        if frame_hex.startswith("@"):
            raw = Path(frame_hex[1:]).read_bytes()
            text = raw.decode(errors="ignore").strip()
            data = bytes.fromhex(text) if all(c in "0123456789abcdefABCDEF" for c in text) else raw
        else:
            data = bytes.fromhex(frame_hex)
        key = _read_key(key_hex, key_file)
    except (ValueError, OSError) as e:
        console.print(f"[red]bad input:[/] {e}")
        raise typer.Exit(2) from e
    try:
        f = fr.parse(data)
        if key is not None:
            fr.verify(f, key)
    except fr.DecodeError as e:
        console.print(f"[red]rejected ({e.reason})[/]: {e.detail}")
        raise typer.Exit(1) from e
    verdict = "MAC verified" if key is not None else "MAC not checked (no key given)"
    console.print(f"[green]{verdict}[/]")
    console.print_json(json.dumps(f.to_dict()))
