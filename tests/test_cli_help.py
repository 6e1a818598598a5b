"""The `tagwatch` help a new user reads first: each command's summary in its group's listing
reads as the sentence its docstring wrote, whatever line breaks the source had."""

from __future__ import annotations

import re
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from tagwatch_cli import app


def _groups(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not hasattr(cmd, "commands"):  # a command, not a group
        return []
    out = [path]
    for name, sub in cmd.commands.items():
        out += _groups(sub, (*path, name))
    return out


GROUPS = _groups(get_command(app))


def _summary(cmd: Any) -> str:
    """A command's summary as its docstring wrote it: the first paragraph, one line (code
    spans shown without their backticks, as markdown renders them)."""
    text = (cmd.help or "").split("\n\n")[0]
    return " ".join(text.replace("`", "").split())


def test_every_group_is_found() -> None:
    assert {("sim",), ("hw",), ("backend",), ("home-unit",), ("backend", "user")} <= set(GROUPS)


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(p) or "tagwatch")
def test_a_groups_listing_shows_each_commands_summary_as_one_sentence(
    path: tuple[str, ...],
) -> None:
    # Wide enough that no summary needs wrapping: a break inside one is the source's line
    # break shown as is ("... then the API" / "and web app served ...").
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    group: Any = get_command(app)
    for name in path:
        group = group.commands[name]
    lines = [re.sub(r"[│\s]+", " ", line).strip() for line in result.output.splitlines()]
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        summary = _summary(cmd)
        assert summary, f"{name} has no help"
        row = next((line for line in lines if line.startswith(f"{name} ")), None)
        assert row is not None, f"{name} is not listed"
        assert row == f"{name} {summary}", f"{name}'s summary is broken across lines"


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, cmd)]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += _commands(sub, (*path, name))
    return out


COMMANDS = _commands(get_command(app))


@pytest.mark.parametrize(
    ("path", "cmd"), COMMANDS, ids=[" ".join(p) or "tagwatch" for p, _ in COMMANDS]
)
def test_a_commands_help_shows_every_word_its_source_wrote(path: tuple[str, ...], cmd: Any) -> None:
    # Help is rendered as markdown: text it would take for markup (an HTML-like `<id>`
    # outside a code span) would vanish from what the user reads.
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    shown = " ".join(re.sub(r"[│╭╮╰╯─]+", " ", result.output).split())
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    for text in texts:
        for paragraph in text.split("\n\n"):
            words = " ".join(paragraph.replace("`", "").split())
            assert words in shown, f"not shown as written: {words!r}"


def test_every_bounded_options_default_is_within_its_bounds() -> None:
    # typer checks a default against the option's bounds like a value typed in, so one
    # outside them makes the command refuse to run without the option.
    bounded = [
        (path, p)
        for path, cmd in COMMANDS
        for p in cmd.params
        if getattr(p, "min", None) is not None or getattr(p, "max", None) is not None
    ]
    assert len(bounded) > 10  # the walk sees the commands' bounded options
    for path, p in bounded:
        d = p.default
        if d is None or callable(d):
            continue
        assert p.min is None or d >= p.min, f"{' '.join(path)} --{p.name} default {d}"
        assert p.max is None or d <= p.max, f"{' '.join(path)} --{p.name} default {d}"


def test_ingest_without_workers_runs_the_configured_number(monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/operations.md runs `tagwatch backend ingest` as is.
    from backend import ingest_worker, logs

    # Not configured here: structlog would cache loggers writing to the runner's stream,
    # closed after the invoke, for every later test in this process.
    monkeypatch.setattr(logs, "configure", lambda *a, **k: None)
    ran: list[tuple[str, int]] = []
    monkeypatch.setattr(ingest_worker, "run_worker", lambda s, i, c: ran.append(("one", i)))
    monkeypatch.setattr(ingest_worker, "supervise", lambda s, n: ran.append(("several", n)))
    runner = CliRunner()
    for env, want in (({}, ("one", 0)), ({"TAGWATCH_INGEST_WORKERS": "3"}, ("several", 3))):
        result = runner.invoke(app, ["backend", "ingest"], env=env)
        assert result.exit_code == 0, result.output
        assert ran.pop() == want
    result = runner.invoke(app, ["backend", "ingest", "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
