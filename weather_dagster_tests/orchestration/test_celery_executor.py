"""Steps of a pooled job run in a Celery worker, with a Redis broker, all on loopback.

The orchestrator is ``dagster job execute`` (a process of its own, like a launched run), the steps go
through Redis to a ``dagster-celery`` worker. Every process is bounded by a timeout and stopped in
teardown, so a stuck broker or worker fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from weather_dagster.dagster_defs.executors import (
    WORKER_ARGS,
    build_executor,
    celery_executor_config,
    min_worker_concurrency,
)
from weather_dagster.dagster_defs.pools import MINER_HTTP_POOL, SCORING_POOL, apply_pool_limits
from weather_dagster.settings import load_settings
from weather_dagster_tests.support import stand_in_defs
from weather_dagster_tests.support.services import (
    VENV_BIN,
    ancestors,
    celery_worker,
    clean_env,
    execute_job,
    instance_home,
    redis_server,
    sqlite_instance_yaml,
    worker_log,
)


def _materialization_metadata(instance: DagsterInstance, name: str) -> dict[str, float]:
    event = instance.get_latest_materialization_event(AssetKey(name))
    assert event is not None and event.asset_materialization is not None, name
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def test_settings_choose_the_executor(tmp_path: Path) -> None:
    local = build_executor(load_settings(data_dir=tmp_path))
    assert local.name == "weather_multiprocess"
    celery = build_executor(load_settings(data_dir=tmp_path, round={"celery_broker_url": "redis://127.0.0.1:1/0"}))
    assert celery.name == "weather_celery"
    config = celery_executor_config(load_settings(round={"celery_broker_url": "redis://h:1/0"}))
    # One Redis serves both broker and results unless told otherwise; no prefetching of step tasks.
    assert config["backend"] == "redis://h:1/0"
    assert config["config_source"]["worker_prefetch_multiplier"] == 1
    assert config["config_source"]["worker_disable_prefetch"] is True


def test_cli_prints_the_worker_config(tmp_path: Path) -> None:
    cli = [str(VENV_BIN / "weather-dagster"), "celery-config"]
    env = clean_env(tmp_path, WEATHER_ROUND__CELERY_BROKER_URL="redis://10.0.0.5:6379/2")
    out = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    block = yaml.safe_load(out)["execution"]["config"]
    assert block["broker"] == block["backend"] == "redis://10.0.0.5:6379/2"
    assert block["config_source"]["broker_transport_options"]["visibility_timeout"] == 6 * 3600
    missing = subprocess.run(cli, env=clean_env(tmp_path), capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "WEATHER_ROUND__CELERY_BROKER_URL" in missing.stderr


def test_pooled_steps_run_in_the_celery_worker(tmp_path: Path) -> None:
    home = instance_home(tmp_path, sqlite_instance_yaml(tmp_path / "dagster_home"))
    steps_keys = ("miner_http_a", "miner_http_b", "scoring")
    with redis_server(tmp_path / "redis") as broker:
        env = clean_env(tmp_path, DAGSTER_HOME=str(home), WEATHER_ROUND__CELERY_BROKER_URL=broker)
        settings = load_settings(round={"celery_broker_url": broker})
        with DagsterInstance.from_config(str(home)) as instance:
            assert apply_pool_limits(instance, settings) == {MINER_HTTP_POOL: 1, SCORING_POOL: 1}
        concurrency = max(2, min_worker_concurrency(settings))
        workdir = tmp_path / "worker"
        with celery_worker(env, celery_executor_config(settings), workdir, concurrency, WORKER_ARGS) as worker:
            orchestrator_pid, code, output = execute_job(env, stand_in_defs.__name__, stand_in_defs.JOB_NAME, 150)
            assert code == 0, output[-3000:] + worker_log(workdir)

            with DagsterInstance.from_config(str(home)) as instance:
                records = instance.get_run_records(RunsFilter(job_name=stand_in_defs.JOB_NAME))
                assert [r.dagster_run.status for r in records] == [DagsterRunStatus.SUCCESS]
                run_id = records[0].dagster_run.run_id
                steps = {name: _materialization_metadata(instance, name) for name in steps_keys}
                celery_steps = {
                    e.step_key
                    for e in instance.all_logs(run_id)
                    if e.dagster_event is not None and "in celery worker" in (e.dagster_event.message or "")
                }
                for pool in (MINER_HTTP_POOL, SCORING_POOL):
                    info = instance.event_log_storage.get_concurrency_info(pool)
                    assert info.slot_count == 1 and not info.claimed_slots and not info.pending_steps, pool

            # Every step ran in a pool process of the worker we started: not here, not in the orchestrator.
            for name, meta in steps.items():
                pid = int(meta["pid"])
                assert pid not in (orchestrator_pid, os.getpid()), name
                assert worker.pid in ancestors(pid), f"{name} ran in pid {pid}, outside the worker"
            assert celery_steps == set(steps_keys)

    # The miner_http pool (limit 1) kept its two steps apart although the worker had a free process.
    a, b = steps["miner_http_a"], steps["miner_http_b"]
    assert a["ended"] <= b["started"] or b["ended"] <= a["started"]
    assert steps["scoring"]["started"] >= max(a["ended"], b["ended"])
