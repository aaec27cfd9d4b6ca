"""``workspace.server.yaml``: the daemon's and webserver's workspace when one code server serves them."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from weather_dagster_tests.support.services import VENV_BIN, clean_env, free_port, stop_group, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_the_server_workspace_loads_the_code_location_from_a_running_code_server(tmp_path: Path) -> None:
    port = free_port()
    workspace = tmp_path / "workspace.server.yaml"
    workspace.write_text((REPO / "workspace.server.yaml").read_text().replace("4266", str(port)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = clean_env(tmp_path, DAGSTER_HOME=str(home))
    cmd = [str(VENV_BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port)]
    cmd += ["-m", "weather_dagster.definitions", "-a", "defs", "--location-name", "weather_dagster"]
    log_path = tmp_path / "code_server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    health = [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)]
    try:
        wait_for(lambda: subprocess.run(health, env=env, capture_output=True).returncode == 0, 120, "code server", proc)
        listed = subprocess.run(
            [str(VENV_BIN / "dagster"), "sensor", "list", "-w", str(workspace)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        stop_group(proc, first=signal.SIGINT, grace_s=10)
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-3000:]
    assert "round_sensor" in listed.stdout and "step_failure_sensor" in listed.stdout, listed.stdout
