"""What an operator's environment gets wrong reaches them as one sentence on stderr with exit
status 2 (tagwatch_cli.main, the `tagwatch` command), never a traceback."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

import tagwatch_cli


def _run(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.setattr(sys, "argv", ["tagwatch", *args])
    with pytest.raises(SystemExit) as exit_:
        tagwatch_cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from backend import logs

    # A command that got as far as configuring its logs would point structlog's cached
    # loggers at this test's captured stderr, closed after it, for every later test.
    monkeypatch.setattr(logs, "configure", lambda *a, **k: None)
    for name in ("TAGWATCH_DATABASE_URL", "TAGWATCH_API_PORT", "TAGWATCH_SERVER_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAGWATCH_DATA_DIR", str(tmp_path / "var"))
    return tmp_path


def test_a_setting_the_backend_refuses_is_named(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAGWATCH_API_PORT", "eighty")
    line = _run(["backend", "serve"], monkeypatch, capsys)
    assert line.startswith("tagwatch: TAGWATCH_API_PORT='eighty': ")
    assert "valid integer" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "not a database URL (sqlite:///PATH or postgresql+psycopg://"),
        ("mysql://u@127.0.0.1/tagwatch", "tagwatch runs on SQLite or PostgreSQL, not mysql"),
    ],
)
def test_a_database_url_tagwatch_cannot_use_is_said(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    says: str,
) -> None:
    monkeypatch.setenv("TAGWATCH_DATABASE_URL", url)
    line = _run(["backend", "devices"], monkeypatch, capsys)
    assert line.startswith("tagwatch: the database (TAGWATCH_DATABASE_URL")
    assert says in line


def test_a_data_dir_that_cannot_be_made_is_said(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = env / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TAGWATCH_DATA_DIR", str(blocker / "var"))
    line = _run(["backend", "migrate"], monkeypatch, capsys)
    assert f"cannot create the database's folder {blocker / 'var'}" in line


def test_a_database_that_cannot_be_reached_is_said(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "TAGWATCH_DATABASE_URL", f"postgresql+psycopg://tagwatch:pw@127.0.0.1:{port}/tagwatch"
    )
    line = _run(["backend", "migrate"], monkeypatch, capsys)
    assert line.startswith("tagwatch: the database (TAGWATCH_DATABASE_URL")
    assert "refused" in line.lower()
    assert "pw@" not in line  # the password never shown


def test_a_path_the_system_refuses_is_said(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = env / "a-file"
    blocker.write_text("")
    out = blocker / "world"  # a folder inside a file
    line = _run(["sim", "world", "dorset-iom-50", "--out", str(out)], monkeypatch, capsys)
    assert line == f"tagwatch: {out}: Not a directory"


def test_a_refused_secret_setting_is_named_but_not_shown(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pydantic import ValidationError

    from backend.settings import Settings

    # Any refused setting whose name says secret: its value stays off the terminal.
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"api_port": "eighty"})
    err = refused.value.errors()[0]
    fake = ValidationError.from_exception_data(
        Settings.__name__,
        [{"type": err["type"], "loc": ("mqtt_password",), "input": "hunter2-hunter2"}],  # type: ignore[typeddict-item]
    )

    def refuse() -> None:
        raise fake

    monkeypatch.setattr(tagwatch_cli, "app", refuse)
    line = _run(["backend", "serve"], monkeypatch, capsys)
    assert line.startswith("tagwatch: TAGWATCH_MQTT_PASSWORD=(not shown): ")
    assert "hunter2" not in line
