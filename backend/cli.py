"""`tagwatch backend ...`: storage, device registry, broker credentials, ingest, retention,
backup and restore.
Configuration comes from TAGWATCH_* environment variables (backend/settings.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from backend.api.admin_cli import brokers_app, subject_app, unit_app, user_app

if TYPE_CHECKING:
    from backend.registry import Registry
    from backend.settings import Settings

app = typer.Typer(help="Monitoring backend: storage, devices, ingest.", no_args_is_help=True)
app.add_typer(unit_app, name="unit")
app.add_typer(user_app, name="user")
app.add_typer(subject_app, name="subject")
app.add_typer(brokers_app, name="brokers")
console = Console()


def _registry() -> tuple[Settings, Registry]:
    from backend.registry import KeyVault, Registry, load_server_key
    from backend.settings import Settings
    from backend.storage.database import make_engine, upgrade

    settings = Settings()
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    return settings, Registry(engine, KeyVault(load_server_key(settings)))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic)."""
    from backend.settings import Settings
    from backend.storage.database import current_revision, make_engine, upgrade

    engine = make_engine(Settings().resolved_database_url())
    upgrade(engine)
    console.print(f"schema at revision {current_revision(engine)}")


@app.command()
def register(
    device_id: Annotated[int, typer.Argument(help="the device id written at provisioning")],
    kind: Annotated[str, typer.Option(help="tag, home_unit or victim")] = "tag",
    key: Annotated[
        str | None, typer.Option(help="the device's key as 64 hex digits (default: generate)")
    ] = None,
    home_unit: Annotated[int | None, typer.Option(help="pair a tag with this home unit")] = None,
    show_key: Annotated[
        bool, typer.Option(help="print the key (to provision the device); shown only now")
    ] = False,
) -> None:
    """Register a tag, home unit or victim device; its key is stored encrypted with the
    server key."""
    from backend.registry import RegistryError, key_from_hex

    _, registry = _registry()
    try:
        raw = key_from_hex(key, "the device's key") if key else None
        dev = registry.register(device_id, kind, raw, home_unit)
    except (RegistryError, ValueError) as e:
        console.print(f"[red]refused:[/] {e}")
        raise typer.Exit(2) from e
    console.print(f"registered {dev.kind} {dev.id}")
    if show_key:
        print(dev.key.hex())


@app.command()
def pair(tag: int, home_unit: int) -> None:
    """Pair a tag with a home unit (regenerate the broker config afterwards)."""
    from backend.registry import RegistryError

    _, registry = _registry()
    try:
        registry.pair(tag, home_unit)
    except RegistryError as e:
        console.print(f"[red]refused:[/] {e}")
        raise typer.Exit(2) from e


@app.command()
def devices() -> None:
    """List registered devices (never their keys)."""
    _, registry = _registry()
    table = Table("id", "kind", "home unit", "retired")
    for d in registry.all(include_retired=True):
        table.add_row(str(d.id), d.kind, str(d.home_unit or "-"), "yes" if d.retired else "")
    console.print(table)


@app.command("broker-config")
def broker_config(
    out: Annotated[Path, typer.Option(help="folder for the passwd and acl files")] = Path(
        "var/mosquitto"
    ),
) -> None:
    """Write Mosquitto's password and ACL files from the registry (then SIGHUP Mosquitto)."""
    from backend import broker_credentials
    from backend.broker import BrokerFiles, backend_auth, device_auth

    settings, registry = _registry()
    try:
        written = broker_credentials.write(
            out, registry.all(), settings.mqtt_username, settings.mqtt_password
        )
    except ValueError as e:
        console.print(f"[red]refused:[/] {e}")
        raise typer.Exit(2) from e
    files = BrokerFiles(
        written.passwd.resolve(), written.backend_passwd.resolve(), written.acl.resolve()
    )
    console.print(f"wrote {files.passwd}, {files.backend_passwd} and {files.acl}")
    # The lines mosquitto.conf needs (docs/operations.md, "Broker"): printed, not written,
    # because listeners, TLS files and addresses are the deployment's own.
    device = "\n".join(f"  {line}" for line in device_auth(files))
    backend = "\n".join(f"  {line}" for line in backend_auth(files))
    print(
        "mosquitto.conf (per_listener_settings true; restart Mosquitto once after adding them):\n"
        f"after each listener devices connect to:\n{device}\n"
        f"after the backend's listener (TAGWATCH_MQTT_HOST/PORT, private):\n{backend}"
    )


@app.command()
def ingest(
    workers: Annotated[
        int | None, typer.Option(min=1, help="worker processes (default TAGWATCH_INGEST_WORKERS)")
    ] = None,
    index: Annotated[int, typer.Option(min=0, help="this worker's slot (one worker)")] = 0,
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id (one worker; never `tag-<id>` or `hu-<id>`)")
    ] = None,
) -> None:
    """Run MQTT ingest workers (N processes on a shared subscription) until stopped."""
    from backend.ingest_worker import run_worker, supervise
    from backend.logs import configure
    from backend.settings import Settings

    settings = Settings()
    configure(settings.log_format)
    n = settings.ingest_workers if workers is None else workers
    if n == 1:
        run_worker(settings, index, client_id)
    else:
        supervise(settings, n)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default TAGWATCH_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default TAGWATCH_API_PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP API (uvicorn) until stopped; TLS belongs to the reverse proxy in front
    (docs/security.md)."""
    import uvicorn

    from backend.api.sse import SHUTDOWN_GRACE_S
    from backend.logs import configure
    from backend.settings import Settings

    settings = Settings()
    configure(settings.log_format)
    uvicorn.run(
        "backend.api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        # Logging as configured above (JSON); each request is logged, with its request id,
        # by backend/api/request_metrics.py instead of uvicorn's plain-text access log.
        log_config=None,
        access_log=False,
    )


@app.command()
def purge(
    only: Annotated[str | None, typer.Option(help="one data class only")] = None,
) -> None:
    """Delete data older than its retention period, in small batches; audited."""
    from backend.settings import Settings
    from backend.storage.database import make_engine, upgrade
    from backend.storage.retention import purge as run_purge

    settings = Settings()
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    print(json.dumps(run_purge(engine, settings, only=only)))


@app.command("audit-verify")
def audit_verify(
    export: Annotated[Path, typer.Argument(help="a CSV from GET /api/audit/export.csv")],
) -> None:
    """Verify the hash chain of an exported audit log, away from the database (an unfiltered
    export: a filtered one leaves gaps in the chain). Prints the head hash to compare with
    the one recorded elsewhere; exits 1 if the chain is broken."""
    from backend.security import audit

    with export.open(newline="", encoding="utf-8") as f:
        try:
            v = audit.verify_rows(audit.from_csv(f))
        except ValueError as e:
            console.print(f"[red]not a readable audit export:[/] {e}")
            raise typer.Exit(2) from e
    print(json.dumps(vars(v)))
    if not v.ok:
        raise typer.Exit(1)


@app.command()
def backup(
    out: Annotated[
        Path, typer.Option(help="a file, or a folder for a file named by the time (UTC)")
    ],
    keep_days: Annotated[
        int, typer.Option(min=0, help="in a folder: delete backups older than this (0: none)")
    ] = 0,
) -> None:
    """Back up the database while it is in use (SQLite online backup; PostgreSQL pg_dump
    custom format); prints what the backup holds, including its audit chain head."""
    from datetime import UTC, datetime

    from backend.settings import Settings
    from backend.storage.backup import BackupError, prune
    from backend.storage.backup import backup as run_backup

    now = datetime.now(UTC)
    try:
        summary = run_backup(Settings().resolved_database_url(), out, now)
    except BackupError as e:
        console.print(f"[red]backup failed:[/] {e}")
        raise typer.Exit(1) from e
    result = summary.as_dict()
    if keep_days and out.is_dir():
        result["pruned"] = [p.name for p in prune(out, keep_days, now)]
    print(json.dumps(result))


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="a file written by `tagwatch backend backup`")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask: replace the database")] = False,
) -> None:
    """Replace the database with a backup (stop the API, workers and timers first), verify
    its audit chain and record the restore in it. Then run `tagwatch backend migrate` and
    `tagwatch backend purge` (docs/operations.md)."""
    import getpass
    import time

    from backend.settings import Settings
    from backend.storage.backup import BackupError
    from backend.storage.backup import restore as run_restore

    url = Settings().resolved_database_url()
    if not yes:
        typer.confirm(f"Replace every row of the database with {source}?", abort=True)
    try:
        summary = run_restore(url, source, f"restore:{getpass.getuser()}", time.time())
    except BackupError as e:
        console.print(f"[red]restore refused:[/] {e}")
        raise typer.Exit(1) from e
    print(json.dumps(summary.as_dict()))
