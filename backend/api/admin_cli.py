"""`tagwatch backend unit add|list`, `user add|list|disable|unlock`, `subject add`: bootstrap
the directory from a shell (the first administrator cannot be created through the API).
`brokers set|status`: a tag's broker list (cmd_broker), as the administrators' API route does.
Passwords are read from a prompt or TAGWATCH_NEW_PASSWORD, never from the command line,
where they would land in shell history and the process list. Every change is audited."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, select

from backend.security import audit, roles
from backend.security.passwords import Passwords
from backend.services import broker_push, subjects, units, users
from backend.services.errors import Refused
from backend.settings import Settings
from backend.storage.database import IMMEDIATE, make_engine, upgrade
from backend.storage.schema import units as units_table
from backend.storage.schema import users as users_table

unit_app = typer.Typer(help="Units (police units and partner agencies).", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
subject_app = typer.Typer(help="Monitored subjects.", no_args_is_help=True)
brokers_app = typer.Typer(help="Tags' broker lists (cmd_broker).", no_args_is_help=True)
console = Console()
ACTOR = "cli"


def _engine() -> tuple[Settings, Engine]:
    settings = Settings()
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    return settings, engine


def _now() -> float:
    from backend.clock import SystemClock

    return SystemClock().now()


def _fail(e: Exception) -> typer.Exit:
    console.print(f"[red]refused:[/] {e}")
    return typer.Exit(2)


def _unit_id(engine: Engine, unit: str) -> int:
    with engine.connect() as conn:
        found = int(unit) if unit.isdigit() else units.by_name(conn, unit)
    if found is None:
        raise _fail(Refused(f"no unit {unit!r}"))
    return found


@unit_app.command("add")
def unit_add(
    name: str,
    kind: Annotated[str, typer.Option(help="police or partner")] = "police",
) -> None:
    """Create a unit."""
    _, engine = _engine()
    now = _now()
    try:
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            unit_id = units.create(conn, name, kind, now)
            audit.append(
                conn,
                audit.Entry(ACTOR, "unit.create", {"unit_id": unit_id, "name": name, "kind": kind}),
                now,
            )
    except Refused as e:
        raise _fail(e) from e
    console.print(f"unit {unit_id}: {name} ({kind})")


@unit_app.command("list")
def unit_list() -> None:
    """List units: id, name and kind."""
    _, engine = _engine()
    table = Table("id", "name", "kind")
    with engine.connect() as conn:
        for r in conn.execute(select(units_table).order_by(units_table.c.id)):
            table.add_row(str(r.id), r.name, r.kind)
    console.print(table)


def _new_password() -> str:
    from_env = os.environ.get("TAGWATCH_NEW_PASSWORD")
    if from_env:
        return from_env
    password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("add")
def user_add(
    username: str,
    unit: Annotated[str, typer.Option(help="unit id or name")],
    role: Annotated[str, typer.Option(help=", ".join(roles.ROLES))],
    display_name: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a user (password from a prompt or TAGWATCH_NEW_PASSWORD)."""
    settings, engine = _engine()
    unit_id = _unit_id(engine, unit)
    password = _new_password()
    now = _now()
    try:
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            user_id = users.create(
                conn, Passwords(settings), username=username, display_name=display_name,
                unit_id=unit_id, role=role, password=password, now=now,
            )  # fmt: skip
            detail = {"user_id": user_id, "username": username, "unit_id": unit_id, "role": role}
            audit.append(conn, audit.Entry(ACTOR, "user.create", detail), now)
    except Refused as e:
        raise _fail(e) from e
    console.print(f"user {user_id}: {username} ({role} of unit {unit_id})")


@user_app.command("list")
def user_list() -> None:
    """List accounts: id, username, unit, role and whether disabled or locked out."""
    _, engine = _engine()
    table = Table("id", "username", "unit", "role", "state")
    now = _now()
    with engine.connect() as conn:
        for r in conn.execute(select(users_table).order_by(users_table.c.id)):
            state = "disabled" if r.disabled_at else ""
            if r.locked_until and r.locked_until > now:
                state = "locked"
            table.add_row(str(r.id), r.username, str(r.unit_id), r.role, state)
    console.print(table)


def _set(username: str, action: str, changes: dict[str, object], reason: str) -> None:
    settings, engine = _engine()
    now = _now()
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        user_id = users.by_username(conn, username)
        if user_id is None:
            raise _fail(Refused(f"no user {username!r}"))
        done = users.update_account(
            conn, Passwords(settings), user_id, changes, actor_id=None, now=now, reason=reason
        )
        detail = {"user_id": user_id, "sessions_revoked": done.sessions_revoked}
        audit.append(conn, audit.Entry(ACTOR, action, detail), now)
    console.print(f"{action.split('.')[1]}d {username}")


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable an account and revoke all of its sessions."""
    _set(username, "user.disable", {"disabled": True}, "disabled")


@user_app.command("unlock")
def user_unlock(username: str) -> None:
    """Clear a lock-out after repeated failed logins."""
    _set(username, "user.unlock", {"unlock": True}, "unlock")


@subject_app.command("add")
def subject_add(
    reference: str,
    name: Annotated[str, typer.Option()],
    unit: Annotated[str, typer.Option(help="owning unit id or name")],
    risk_notes: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a subject owned by a unit."""
    _, engine = _engine()
    unit_id = _unit_id(engine, unit)
    now = _now()
    try:
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            subject_id = subjects.create(
                conn, reference=reference, name=name, unit_id=unit_id, risk_notes=risk_notes,
                now=now,
            )  # fmt: skip
            audit.append(
                conn,
                audit.Entry(
                    ACTOR, "subject.create", {"unit_id": unit_id}, subject_ids=[subject_id]
                ),
                now,
            )
    except Refused as e:
        raise _fail(e) from e
    console.print(f"subject {subject_id}: {reference} (unit {unit_id})")


TagOption = Annotated[int | None, typer.Option(help="one tag")]
UnitOption = Annotated[str | None, typer.Option(help="every tag in this unit's pool (id or name)")]


def _tags(engine: Engine, conn: Connection, tag: int | None, unit: str | None) -> list[int]:
    unit_id = None if unit is None else _unit_id(engine, unit)
    return broker_push.target_tags(conn, tag, unit_id)


@brokers_app.command("set")
def brokers_set(
    brokers: Annotated[
        list[str] | None, typer.Argument(help="host:port of each broker, in the order tried")
    ] = None,
    tag: TagOption = None,
    unit: UnitOption = None,
) -> None:
    """Queue a new broker list (1-4 host:port) for one tag or every tag of a unit's pool; an
    ingest worker sends it at its next rules tick (`brokers status` shows where it is)."""
    _, engine = _engine()
    now = _now()
    try:
        listed = broker_push.checked(brokers or [])
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            tags = _tags(engine, conn, tag, unit)
            ids = broker_push.queue(conn, listed, tags, ACTOR, now)
            detail = {"brokers": listed, "tags": tags, "unit": unit, "queued": ids}
            audit.append(conn, audit.Entry(ACTOR, "tag.brokers", detail), now)
    except Refused as e:
        raise _fail(e) from e
    console.print(f"queued {' '.join(listed)} for {len(tags)} tag(s): {tags}")


@brokers_app.command("status")
def brokers_status(tag: TagOption = None, unit: UnitOption = None) -> None:
    """The newest broker list queued for each tag and where it is (JSON): `state` queued (no
    worker has sent it yet), sent (published, no answer yet), dropped, taken or refused."""
    _, engine = _engine()
    try:
        with engine.connect() as conn:
            rows = broker_push.deliveries(conn, _tags(engine, conn, tag, unit))
    except Refused as e:
        raise _fail(e) from e
    print(json.dumps([asdict(d) for d in rows], indent=1))
