"""The `tagwatch` command: one typer app whose sub-commands come from each component."""

from __future__ import annotations

from typing import Any

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


def main() -> None:
    """`tagwatch`: the app, with what an operator's environment got wrong said in a sentence
    on stderr (exit status 2), not a traceback: a TAGWATCH_* setting the backend's Settings
    refuse, a database URL tagwatch cannot use, a database that cannot be reached, a path the
    system refuses."""
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    from backend.settings import Settings
    from backend.storage.database import DatabaseUrlError

    try:
        app()
    except ValidationError as e:
        if e.title != Settings.__name__:
            raise
        prefix = str(Settings.model_config.get("env_prefix", ""))
        for err in e.errors():
            name = prefix + "_".join(str(p) for p in err["loc"]).upper()
            shown = "(not shown)" if _secret(Settings, err["loc"]) else repr(err.get("input"))
            _say(f"{name}={shown}: {err['msg']}")
        raise SystemExit(2) from None
    except DatabaseUrlError as e:
        _say(f"the database (TAGWATCH_DATABASE_URL, else SQLite in TAGWATCH_DATA_DIR): {e}")
        raise SystemExit(2) from None
    except OSError as e:
        if e.filename is None:
            raise
        # A path the user gave (an output folder, a file to read) the system refused.
        _say(f"{e.filename}: {e.strerror or e}")
        raise SystemExit(2) from None
    except OperationalError as e:
        reason = str(e.orig or e).strip().splitlines()[0]
        _say(f"the database (TAGWATCH_DATABASE_URL, else SQLite in TAGWATCH_DATA_DIR): {reason}")
        raise SystemExit(2) from None


def _secret(settings: Any, loc: tuple[Any, ...]) -> bool:
    """Whether a refused setting's value may be a secret (a key, a password: not a number
    such as the token lifetime's), so that it is named but not echoed."""
    field = settings.model_fields.get(str(loc[0])) if loc else None
    if field is not None and field.annotation in (int, float, bool):
        return False
    return any(w in "_".join(map(str, loc)).upper() for w in ("KEY", "PASSWORD", "SECRET", "TOKEN"))


def _say(sentence: str) -> None:
    typer.echo(f"tagwatch: {sentence}", err=True)
