from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from dagster import Definitions

from weather_dagster.db.engine import Database
from weather_dagster.definitions import build_definitions
from weather_dagster.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHER_")}
    env.update(DAGSTER_HOME=str(tmp_path / "dagster_home"), WEATHER_DATA_DIR=str(tmp_path / "data"), **extra)
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return env


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_definitions_carry_settings_and_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    defs = build_definitions(settings, Database(f"sqlite:///{tmp_path / 'x.db'}"))
    assert isinstance(defs, Definitions)
    resources = defs.resources
    assert set(resources) >= {"settings", "db"}
    # Loading definitions never touches the database.
    assert not (tmp_path / "x.db").exists()


def test_bad_settings_fail_at_startup_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "weather_dagster.cli", "db", "current"],
        cwd=REPO,
        env=_env(tmp_path, WEATHER_RETRY__POLL_MAX_ATTEMPTS="-3"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "WEATHER_RETRY__POLL_MAX_ATTEMPTS" in result.stderr and ">= 1" in result.stderr


def test_cli_db_upgrade_and_downgrade(db_url: str, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "weather-dagster"
    env = _env(tmp_path, WEATHER_DATABASE_URL=db_url)
    up = subprocess.run([str(cli), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert re.search(r"revision: (\w+) \(head: \1\)", up.stdout), up.stdout  # at the head, whatever it is
    down = subprocess.run([str(cli), "db", "downgrade", "base"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "revision: (empty)" in down.stdout


HEAVY = ("numba", "xarray", "matplotlib", "substrateinterface", "bittensor", "cfgrib", "zarr", "pandas")


def test_loading_the_code_location_imports_no_heavy_module(tmp_path: Path) -> None:
    """Every run process and the code server load the location: the scientific stack loads in the runs."""
    probe = (
        "import sys, weather_dagster.definitions as d; "
        "d.defs.get_repository_def(); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_each_domain_brings_its_own_definitions(tmp_path: Path) -> None:
    defs = build_definitions(Settings(data_dir=tmp_path), Database(f"sqlite:///{tmp_path / 'x.db'}"))
    repository = defs.get_repository_def()
    groups = {
        key.to_user_string(): group
        for a in repository.assets_defs_by_key.values()
        for key, group in a.group_names_by_key.items()
    }
    assert {name for name, group in groups.items() if group == "statistics"} == {
        "subnet_snapshot",
        "miner_stats",
        "round_weights",
    }
    executors = {job.name: job.executor_def.name for job in repository.get_all_jobs() if not job.name.startswith("__")}
    # Single-op batch jobs run in the run worker's process; the default stays for multi-step asset jobs.
    assert set(executors.values()) == {"in_process"}
    assert {"score_batch_job", "advance_miners_job", "round_status_job", "round_rollup_job"} <= set(executors)
    assert repository.get_top_level_resources().keys() >= {"settings", "db", "reference", "scoring_inputs", "metagraph"}
