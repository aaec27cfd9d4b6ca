"""The forking run launcher, through Dagster's own CLI on a real SQLite instance.

Each test launches ``report_job`` (``weather_dagster_tests.support.forking_jobs``) with ``dagster job
launch``: the CLI's instance loads the launcher from ``dagster.yaml``, the launcher starts its preloaded
process, and the run reports the pid it ran in and the pid that imported its code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.launcher import WorkerStatus

from weather_dagster.dagster_defs.launcher import WORKER_TAG, ForkingRunLauncher
from weather_dagster_tests.support.services import VENV_BIN, clean_env

REPO = Path(__file__).resolve().parents[2]
MODULE = "weather_dagster_tests.support.forking_jobs"
DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: {home}
run_coordinator:  # the CLI launches at once (no daemon here)
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: weather_dagster.dagster_defs.launcher
  class: ForkingRunLauncher
  config:
    preload: [{preload}]
telemetry:
  enabled: false
"""


def _home(tmp_path: Path, preload: str) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(home=home, preload=preload))
    return home


def _launch(tmp_path: Path, home: Path, hold_s: float = 0.0) -> tuple[str, Path]:
    report = tmp_path / "report.json"
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"ops": {"report_where": {"config": {"report": str(report), "hold_s": hold_s}}}}))
    cmd = [
        str(VENV_BIN / "dagster"),
        "job",
        "launch",
        "-m",
        MODULE,
        "-a",
        "defs",
        "-j",
        "report_job",
        "-c",
        str(config),
    ]
    log = tmp_path / "launch.log"  # a file, not a pipe: the preloaded process and its runs keep stderr open
    with log.open("w") as handle:
        done = subprocess.run(
            cmd, cwd=REPO, env=clean_env(tmp_path, DAGSTER_HOME=str(home)), stdout=handle, stderr=handle, timeout=180
        )
    assert done.returncode == 0, log.read_text()[-3000:]
    with DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_run_records()
    return record.dagster_run.run_id, report


def _wait_status(home: Path, run_id: str, statuses: set[DagsterRunStatus], timeout_s: float = 90) -> DagsterRunStatus:
    deadline = time.monotonic() + timeout_s
    with DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            status = instance.get_run_by_id(run_id).status
            if status in statuses:
                return status
            time.sleep(0.2)
    raise TimeoutError(f"run {run_id} not in {statuses} after {timeout_s} s (last {status})")


def _final(home: Path, run_id: str) -> DagsterRunStatus:
    return _wait_status(home, run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED})


def _wait_file(path: Path, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return json.loads(path.read_text())
        time.sleep(0.1)
    raise TimeoutError(f"{path} never written")


def _engine_messages(home: Path, run_id: str) -> list[str]:
    with DagsterInstance.from_config(str(home)) as instance:
        return [entry.message or "" for entry in instance.all_logs(run_id)]


def _failure_message(home: Path, run_id: str) -> str:
    with DagsterInstance.from_config(str(home)) as instance:
        events = instance.all_logs(run_id, of_type=DagsterEventType.PIPELINE_FAILURE)
    return " ".join(entry.dagster_event.message or "" for entry in events)


def test_a_run_is_forked_from_the_process_that_imported_its_code(tmp_path: Path) -> None:
    home = _home(tmp_path, f'"{MODULE}:defs"')
    run_id, report = _launch(tmp_path, home)
    assert _final(home, run_id) == DagsterRunStatus.SUCCESS
    where = _wait_file(report)
    # Imported once, in the preloaded process; the run is its child and did not import the code again.
    assert where["imported_in"] == where["ppid"] != where["pid"]
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
    _host, pid, _start = run.tags[WORKER_TAG].rsplit(":", 2)
    assert int(pid) == where["pid"]
    assert any("Run forked from the preloaded run process" in m for m in _engine_messages(home, run_id))


def test_a_killed_run_worker_fails_its_run_at_once_and_fails_the_health_check(tmp_path: Path) -> None:
    home = _home(tmp_path, f'"{MODULE}:defs"')
    run_id, report = _launch(tmp_path, home, hold_s=60)
    where = _wait_file(report)
    with DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, ForkingRunLauncher)
        assert launcher.check_run_worker_health(instance.get_run_by_id(run_id)).status == WorkerStatus.RUNNING
        os.kill(where["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30  # the kill lands asynchronously
        while (
            health := launcher.check_run_worker_health(instance.get_run_by_id(run_id))
        ).status == WorkerStatus.RUNNING:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert health.status == WorkerStatus.FAILED and str(where["pid"]) in (health.msg or "")
    # The preloaded process reaps its child and marks the run failed without waiting for run monitoring.
    assert _final(home, run_id) == DagsterRunStatus.FAILURE
    assert "died (signal 9)" in _failure_message(home, run_id)


def test_terminate_cancels_a_forked_run(tmp_path: Path) -> None:
    home = _home(tmp_path, f'"{MODULE}:defs"')
    run_id, report = _launch(tmp_path, home, hold_s=60)
    where = _wait_file(report)
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_launcher.terminate(run_id) is True
    assert _final(home, run_id) == DagsterRunStatus.CANCELED
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{where['pid']}").exists():
        time.sleep(0.1)
    stat = Path(f"/proc/{where['pid']}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1][0] == "Z"


@pytest.mark.parametrize("preload", ['"json"'], ids=["not-preloaded"])
def test_a_code_location_not_preloaded_runs_through_the_code_server(tmp_path: Path, preload: str) -> None:
    home = _home(tmp_path, preload)
    run_id, report = _launch(tmp_path, home)
    assert _final(home, run_id) == DagsterRunStatus.SUCCESS
    where = _wait_file(report)
    assert where["imported_in"] == where["pid"]  # a spawned run process imports the code itself
    messages = _engine_messages(home, run_id)
    assert any("Launching through the code server" in m and "not preloaded" in m for m in messages)
    with DagsterInstance.from_config(str(home)) as instance:
        assert WORKER_TAG not in instance.get_run_by_id(run_id).tags


def test_a_forker_whose_preload_fails_falls_back_with_the_reason(tmp_path: Path) -> None:
    home = _home(tmp_path, f'"{MODULE}:defs", "weather_dagster_tests.support.no_such_module"')
    run_id, _report = _launch(tmp_path, home)
    assert _final(home, run_id) == DagsterRunStatus.SUCCESS
    messages = _engine_messages(home, run_id)
    assert any("preload failed" in m and "no_such_module" in m for m in messages)
