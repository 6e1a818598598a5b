"""The settings file, the CLI, and the file-backed sensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from home_unit import store
from home_unit.cli import app
from home_unit.sensors import FileSensors
from home_unit.settings import SettingsError, load

KEY = "11" * 32


def test_toml_and_json_with_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "hu.toml"
    toml.write_text(f'unit = 5001\nkey_hex = "{KEY}"\nbroker_port = 1884\nradio = "sim"\n')
    s = load(toml)
    assert (s.unit, s.broker_port, s.radio, s.key()) == (5001, 1884, "sim", bytes.fromhex(KEY))
    monkeypatch.setenv("TAGWATCH_HU_BROKER_PORT", "1999")
    assert load(toml).broker_port == 1999
    js = tmp_path / "hu.json"
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    js.write_text(json.dumps({"unit": 7, "key_file": str(keyfile)}))
    assert load(js).key() == bytes.fromhex(KEY)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('unit = 5001\nkey_hex = "zz"\n', "key_hex"),
        ("unit = 5001\n", "exactly one of key_hex and key_file"),
        (f'unit = 0\nkey_hex = "{KEY}"\n', "unit"),
        (f'unit = 1\nkey_hex = "{KEY}"\nsurprise = 1\n', "surprise"),
        (f'unit = 1\nkey_hex = "{KEY}"\nsim_radio = "nohost"\n', "sim_radio"),
        ("unit = = 1\n", "hu.toml"),
    ],
)
def test_bad_settings_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "hu.toml"
    p.write_text(text)
    with pytest.raises(SettingsError) as e:
        load(p)
    assert needle in str(e.value)


def test_cli_refuses_bad_settings_and_reports_status(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("unit: 1")
    res = runner.invoke(app, ["run", "--config", str(bad)])
    assert res.exit_code == 2 and ".toml or .json" in res.output
    good = tmp_path / "hu.toml"
    db = tmp_path / "state.db"
    good.write_text(f'unit = 5001\nkey_hex = "{KEY}"\nstate_db = "{db}"\n')
    s = store.Store(db)
    s.enqueue(store.RELAY, [(1001, 1, 1, b"x"), (1001, 1, 2, b"y")], 0, 10)
    s.close()
    res = runner.invoke(app, ["status", "--config", str(good)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["relay_queued"] == 2


def test_file_sensors_read_sysfs_power_supply_and_switches(tmp_path: Path) -> None:
    ps = tmp_path / "power_supply"
    (ps / "ac").mkdir(parents=True)
    (ps / "ac" / "type").write_text("Mains\n")
    (ps / "ac" / "online").write_text("1\n")
    (ps / "ups").mkdir()
    (ps / "ups" / "type").write_text("Battery\n")
    (ps / "ups" / "capacity").write_text("87\n")
    moved = tmp_path / "moved"
    moved.write_text("0")
    sensors = FileSensors(ps, moved, tmp_path / "missing")
    r = sensors.read()
    assert (r.mains, r.battery, r.moved, r.case_open) == (True, 87, False, None)
    assert sensors.unreadable == 1  # the missing case switch, counted
    (ps / "ac" / "online").write_text("0\n")
    (ps / "ups" / "capacity").write_text("garbage\n")
    moved.write_text("1")
    r = sensors.read()
    assert (r.mains, r.battery, r.moved) == (False, None, True)
    assert FileSensors().read() == type(r)(None, None, None, None)
