"""The shipped systemd units, checked the way systemd itself reads them, offline.

`systemd-analyze verify --root=ROOT` runs against a throw-away root holding the units byte
for byte in /etc/systemd/system (with their shared drop-in), a copy of this machine's
system units (the targets they order against) and the real `tagwatch` command at the path
the units and docs/operations.md install it to. Verify then fails on an unknown directive,
a bad value, a missing dependency or an ExecStart that is not executable; each unit's
command line is also run with --help through the real CLI, which refuses an unknown
command or option; and `systemd-analyze security --offline` shows the hardening reaching
every service through the drop-in."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from backend.settings import Settings
from tests.backend.deploy.services import TAGWATCH

DEPLOY = Path(__file__).parents[3] / "backend" / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED = "/opt/tagwatch/venv/bin/tagwatch"
SERVICES = [
    "tagwatch-api.service",
    "tagwatch-ingest@1.service",
    "tagwatch-migrate.service",
    "tagwatch-purge.service",
    "tagwatch-backup.service",
]
TIMERS = ["tagwatch-purge.timer", "tagwatch-backup.timer"]
HARDENING = ["NoNewPrivileges=", "ProtectSystem=", "PrivateTmp=", "User=/DynamicUser="]


def _system_units() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "multi-user.target").exists():
            return candidate
    raise AssertionError("no system units: `apt-get install systemd` (make test does this)")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("systemd-analyze"), "`apt-get install systemd` (make test does this)"
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree(_system_units(), root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(UNITS, root / "etc/systemd/system")
    exe = root / INSTALLED.lstrip("/")
    exe.parent.mkdir(parents=True)
    shutil.copy2(TAGWATCH, exe)
    return root


def _analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("unit", SERVICES + TIMERS)
def test_systemd_analyze_verify_is_clean(root: Path, unit: str) -> None:
    proc = _analyze(root, "verify", unit)
    # Unknown keys are only warnings (exit 0): nothing at all may be printed.
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_verify_notices_what_it_should(root: Path, tmp_path: Path) -> None:
    """The check above can fail: a typo in the shared drop-in and a missing command."""
    bad = tmp_path / "root"
    shutil.copytree(root, bad, symlinks=True)
    dropin = bad / "etc/systemd/system/tagwatch-.service.d/10-tagwatch.conf"
    dropin.write_text(dropin.read_text() + "ProtectSystm=strict\n")
    assert "Unknown key 'ProtectSystm'" in _analyze(bad, "verify", "tagwatch-api.service").stderr
    (bad / INSTALLED.lstrip("/")).unlink()
    proc = _analyze(bad, "verify", "tagwatch-ingest@1.service")
    assert proc.returncode != 0 and "is not executable" in proc.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_every_service_is_hardened(root: Path, unit: str) -> None:
    proc = _analyze(root, "security", "--offline=true", unit)
    assert proc.returncode == 0, proc.stderr
    passed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("✓")}
    assert set(HARDENING) <= passed, proc.stdout


def test_every_exec_start_is_a_command_the_cli_accepts() -> None:
    lines = [
        line.split("=", 1)[1]
        for unit in sorted(UNITS.glob("*.service"))
        for line in unit.read_text().splitlines()
        if line.startswith("ExecStart=")
    ]
    assert len(lines) == 5
    for line in lines:
        argv = shlex.split(line.replace("%i", "1"))
        assert argv[0] == INSTALLED
        proc = subprocess.run(
            [TAGWATCH, *argv[1:], "--help"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{line}: {proc.stdout}{proc.stderr}"


def test_the_example_environment_file_sets_only_real_settings() -> None:
    env = dotenv_values(DEPLOY / "tagwatch.env.example")
    fields = {f"TAGWATCH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) - fields == set()
    settings = Settings(_env_file=DEPLOY / "tagwatch.env.example")  # type: ignore[call-arg]
    assert settings.log_format == "json" and settings.ingest_http_port == 9100
    assert re.match(r"postgresql\+psycopg://", settings.resolved_database_url())
