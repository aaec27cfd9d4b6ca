"""``weather-dagster ui`` serves a demo's instance from what the demo recorded, on 127.0.0.1, and stops
everything it started; a port already taken is refused with what to do."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from weather_dagster.demo import DAGSTER_YAML
from weather_dagster.operator.demo_env import write_demo_env
from weather_dagster_tests.operator.test_cli_operator_input import _processes_mentioning, _refused
from weather_dagster_tests.support.services import VENV_BIN, clean_env, free_port

CLI = str(VENV_BIN / "weather-dagster")


def _fake_finished_demo(out: Path) -> None:
    """What a finished demo leaves: its Dagster home and the settings file (a database of its own)."""
    home = out / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(home=home))
    write_demo_env(out, {"WEATHER_DATABASE_URL": f"sqlite:///{out / 'weather.db'}", "PATH": "not a setting"})


def test_ui_serves_the_demo_instance_on_loopback_and_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    _fake_finished_demo(out)
    assert "PATH" not in (out / "weather.env").read_text()  # only WEATHER_* settings are recorded
    port = free_port()
    cmd = [CLI, "ui", "--demo", str(out), "--port", str(port), "--once"]
    done = subprocess.run(cmd, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:], (out / "ui.log").read_text()[-3000:])
    assert f"Dagster UI on the demo's instance: http://127.0.0.1:{port}" in done.stdout
    assert _processes_mentioning(str(out)) == []


def test_ui_on_a_port_in_use_names_another_port(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    _fake_finished_demo(out)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [CLI, "ui", "--demo", str(out), "--port", str(port)],
            env=clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
    _refused(done, f"port {port} on 127.0.0.1 is in use", "UI_PORT=3001")
