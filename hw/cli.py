"""`tagwatch hw ...`: tools for hardware engineers: build, flash, provision, bench a board,
run a virtual one, decode a captured frame. Board problems (a bad port, a board that does
not answer, a failed hash check) print one clear line and exit non-zero."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from firmware import frame as fr

app = typer.Typer(help="Hardware engineers' tools.", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)  # one line per error, never wrapped

BoardOpt = Annotated[str, typer.Option("--board", help="board definition (hw/boards/NAME.json)")]
PortOpt = Annotated[str, typer.Option("--port", help="the board's console serial port")]
TimeoutOpt = Annotated[float, typer.Option(help="seconds to wait for the board to answer")]
# Exit codes: 1 the board failed a check, 2 bad input, 3 the board or its port is unusable.
EXIT_CHECK, EXIT_INPUT, EXIT_BOARD = 1, 2, 3


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn the tools' own errors into one red line and an exit code."""
    from hw.boarddef import BoardDefError
    from hw.image import BuildError
    from hw.link import BoardError, HashMismatchError
    from hw.provision import ProvisionError
    from hw.virtual import VirtualBoardError

    try:
        yield
    except HashMismatchError as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(EXIT_CHECK) from e
    except (BoardError, VirtualBoardError) as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(EXIT_BOARD) from e
    except (BoardDefError, BuildError, ProvisionError) as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(EXIT_INPUT) from e


def _image_for(board: str, image_dir: Path | None) -> Any:
    from hw import image as img

    if image_dir is not None:
        image = img.load(image_dir)
        if image.board != board:
            raise img.BuildError(f"{image_dir} is an image for {image.board}, not {board}")
        return image
    return img.build(board, Path("build") / "image" / board)


@app.command()
def build(
    board: BoardOpt = "esp32s3",
    out: Annotated[
        Path | None, typer.Option(help="image folder (default build/image/BOARD)")
    ] = None,
) -> None:
    """Compile firmware/ with mpy-cross for the board; write the image folder and a freeze
    manifest; print the sizes."""
    from hw import image as img

    with _clear_errors():
        image = img.build(board, out or Path("build") / "image" / board)
    table = Table("file", "source", ".mpy / bytes", title=f"image for {board} ({image.arch})")
    for f in image.files:
        table.add_row(f.path, str(f.source_size or "-"), str(f.size))
    src = sum(f.source_size for f in image.files)
    table.add_row("[b]total", str(src), f"[b]{image.total()}", end_section=True)
    console.print(table)
    console.print(f"{image.mpy_cross}")
    console.print(f"image: {image.fs}  manifest: {image.root / 'manifest.py'}")


@app.command()
def flash(
    port: PortOpt,
    board: BoardOpt = "esp32s3",
    config: Annotated[
        Path | None, typer.Option(help="a device config.json to write with the image")
    ] = None,
    erase: Annotated[bool, typer.Option(help="wipe the board's filesystem first")] = False,
    image_dir: Annotated[
        Path | None, typer.Option("--image", help="an image folder (default: build it now)")
    ] = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Copy the image (and a device config) to the board over its serial port, verify every
    file's SHA-256 on the board, and reset it to run."""
    from hw.flash import flash as do_flash
    from hw.link import Board, check_port

    with _clear_errors():
        cfg = None
        if config is not None:
            try:
                cfg = config.read_bytes()
                json.loads(cfg)
            except (OSError, ValueError) as e:
                err.print(f"[red]error:[/] config {config}: {e}")
                raise typer.Exit(EXIT_INPUT) from e
        check_port(port)  # before a build, so a wrong port fails at once
        image = _image_for(board, image_dir)
        with Board(port, timeout_s=timeout) as b:
            result = do_flash(b, image, cfg, erase)
    erased = f", {result.erased} old files erased" if erase else ""
    console.print(
        f"[green]flashed[/] {result.files} files ({result.bytes} bytes) to {port}{erased}; "
        "SHA-256 verified on the board; reset"
    )


@app.command()
def verify(
    port: PortOpt,
    board: BoardOpt = "esp32s3",
    image_dir: Annotated[
        Path | None, typer.Option("--image", help="an image folder (default: build it now)")
    ] = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Check that what is on the board is the image (SHA-256 of every file), then reset it."""
    from hw.flash import verify as do_verify
    from hw.link import Board, check_port

    with _clear_errors():
        check_port(port)
        image = _image_for(board, image_dir)
        with Board(port, timeout_s=timeout) as b:
            b.enter()
            do_verify(b, {f.path: f.sha256 for f in image.files})
            b.soft_reset()
    console.print(f"[green]verified[/] {len(image.files)} files on {port}")


@app.command()
def provision(
    port: PortOpt,
    device: Annotated[int, typer.Option(help="the new device's id")],
    server: Annotated[
        list[str],
        typer.Option(help="an MQTT broker the tag uplinks to, HOST:PORT; repeat, in order"),
    ],
    board: BoardOpt = "esp32s3",
    home_unit: Annotated[int | None, typer.Option(help="pair with this home unit")] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="firmware setting KEY=VALUE (firmware/config.py); repeat"),
    ] = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Register the tag in the backend registry (TAGWATCH_DATABASE_URL, server key as for
    `tagwatch backend`), write its config (id, key, brokers, pairing) to the board, verify it,
    and print the label line. The key is never shown; the tag derives its broker password
    from it."""
    from hw.link import Board
    from hw.provision import LocalRegistrar, parse_settings
    from hw.provision import provision as do_provision

    with _clear_errors():
        settings = parse_settings(setting or [])
        with Board(port, timeout_s=timeout) as b:  # a bad port fails before the registry opens
            registrar = LocalRegistrar()
            try:
                result = do_provision(b, board, registrar, device, server, home_unit, settings)
            finally:
                registrar.close()
    console.print(f"[green]provisioned[/] tag {result.device} on {port}; config verified; reset")
    console.print("label:")
    print(result.label)


@app.command()
def virtual(
    dir: Annotated[
        Path, typer.Option("--dir", help="the board's folder (fs/ is its filesystem)")
    ] = Path("build/virtual"),
    broker: Annotated[
        str, typer.Option(help="MQTT broker for the modem, HOST:PORT")
    ] = "127.0.0.1:1883",
    heap: Annotated[str, typer.Option(help="MicroPython heap (-X heapsize)")] = "256k",
    control_port: Annotated[int, typer.Option(help="control socket port (0: any free)")] = 0,
    info_file: Annotated[
        Path | None, typer.Option(help="also write the paths as JSON to this file")
    ] = None,
) -> None:
    """Start a virtual board (the firmware under the MicroPython unix port on the simulator
    board): print its console and GNSS ptys; run until Ctrl-C."""
    from hw.provision import ProvisionError, parse_server
    from hw.virtual import VirtualBoard, serve

    try:
        host, bport = parse_server(broker)
    except ProvisionError as e:
        err.print(f"[red]error:[/] --broker: {e}")
        raise typer.Exit(EXIT_INPUT) from e

    def ready(info: dict[str, Any]) -> None:
        table = Table("", "", title="virtual board (Ctrl-C stops it)", show_header=False)
        for k, v in info.items():
            table.add_row(k, v)
        console.print(table)
        sys.stdout.flush()
        if info_file is not None:
            tmp = info_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.replace(info_file)

    with _clear_errors():
        serve(VirtualBoard(dir, host, bport, heap, control_port), ready)


def _read_key(key_hex: str | None, key_file: Path | None) -> bytes | None:
    from backend.registry import key_from_hex

    if key_file is not None:
        return key_from_hex(key_file.read_text(), f"the key in {key_file}")
    if key_hex is not None:
        return key_from_hex(key_hex, "the device's key")
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
            try:
                data = bytes.fromhex(frame_hex)
            except ValueError:
                if Path(frame_hex).is_file():  # a capture's path without its @
                    raise ValueError(f"{frame_hex} is a file: pass it as @{frame_hex}") from None
                raise
        key = _read_key(key_hex, key_file)
    except (ValueError, OSError) as e:
        console.print(f"[red]bad input:[/] {e}", soft_wrap=True)  # one line, as `err`
        raise typer.Exit(2) from e
    try:
        f = fr.parse(data)
        if key is not None:
            fr.verify(f, key)
    except fr.DecodeError as e:
        console.print(f"[red]rejected ({e.reason})[/]: {e.detail}", soft_wrap=True)
        raise typer.Exit(1) from e
    verdict = "MAC verified" if key is not None else "MAC not checked (no key given)"
    console.print(f"[green]{verdict}[/]")
    console.print_json(json.dumps(f.to_dict()))


@app.command()
def bench(
    port: PortOpt,
    gnss_port: Annotated[
        str, typer.Option(help="serial adapter wired to the board's GNSS UART input")
    ],
    broker: Annotated[str, typer.Option(help="the broker the board uplinks to, HOST:PORT")],
    strap_control: Annotated[
        str | None,
        typer.Option(help="a virtual board's control address: open the strap through it"),
    ] = None,
    gnss_baud: Annotated[int, typer.Option(help="GNSS UART baud rate")] = 9600,
    walk_s: Annotated[
        float | None, typer.Option(help="walk length (default: from settings)")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="JSON report file")] = None,
    receiver: Annotated[
        str, typer.Option(help="GNSS receiver whose NMEA to write: ublox-m10, mtk, sirf, ...")
    ] = "ublox-m10",
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Run the bench scenarios against a provisioned board: scripted walk, no sky, a jump,
    strap opening; check what it sent. Pass/fail table and a JSON report."""
    import serial

    from hw import bench as hwbench
    from sim import nmea

    if receiver not in nmea.PROFILES:
        err.print(
            f"[red]error:[/] --receiver: unknown {receiver!r} (known: {', '.join(nmea.PROFILES)})"
        )
        raise typer.Exit(EXIT_INPUT)
    from hw.link import Board, PortError, check_port
    from hw.provision import ProvisionError, parse_server
    from hw.virtual import control

    try:
        host, bport = parse_server(broker)
    except ProvisionError as e:
        err.print(f"[red]error:[/] --broker: {e}")
        raise typer.Exit(EXIT_INPUT) from e

    def open_strap() -> None:
        if strap_control is not None:
            control(strap_control, "strap 1", timeout)  # a busy bench host answers late too
        else:
            typer.prompt("Open the strap loop, then press Enter", default="", show_default=False)

    with _clear_errors():
        check_port(gnss_port)
        try:
            gnss = serial.serial_for_url(gnss_port, baudrate=gnss_baud, timeout=1)
        except (serial.SerialException, OSError) as e:
            raise PortError(f"cannot open GNSS port {gnss_port}: {e}") from e
        try:
            with Board(port, timeout_s=timeout) as b:
                result = hwbench.run(
                    b, gnss, (host, bport), open_strap, walk_s, console.print, receiver
                )
        finally:
            gnss.close()
    table = Table("check", "result", "detail", title=f"bench: tag {result.device}")
    for c in result.checks:
        table.add_row(c.name, "[green]pass" if c.passed else "[red]FAIL", c.detail)
    console.print(table)
    out = report or Path(f"bench-{result.device}.json")
    out.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    console.print(f"report: {out}")
    if not result.passed:
        raise typer.Exit(EXIT_CHECK)
