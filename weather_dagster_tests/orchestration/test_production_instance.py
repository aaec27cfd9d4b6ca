"""The production instance config (``dagster.postgres.yaml``) against a throwaway PostgreSQL.

The repository's YAML is loaded as is into a real ``DagsterInstance``; a pooled job runs through it in a
process of its own (as a launched run would), and the run, its events and the pool limits are then read
back from PostgreSQL with plain SQL, not through Dagster, to show where they live.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import AssetKey, DagsterEventType, DagsterInstance
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from weather_dagster.dagster_defs.pools import MINER_HTTP_POOL, SCORING_POOL
from weather_dagster_tests.support import stand_in_defs
from weather_dagster_tests.support.pg_server import PostgresServer
from weather_dagster_tests.support.services import REPO, VENV_BIN, clean_env, execute_job, instance_home

pytestmark = pytest.mark.postgres


def _pool_limits(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text('SELECT concurrency_key, "limit" FROM concurrency_limits')).all()
    return dict(rows)


def _cli(env: dict[str, str], *cmd: str) -> str:
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_postgres_instance_config_runs_a_pooled_job(
    pg_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sa.make_url(pg_server.create_database("dagster"))
    pg_env = {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": "unused-trust-auth",
        "DAGSTER_PG_DB": url.database,
    }
    for name, value in pg_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WEATHER_ROUND__CELERY_BROKER_URL", raising=False)
    home = instance_home(tmp_path, (REPO / "dagster.postgres.yaml").read_text())
    env = clean_env(tmp_path, DAGSTER_HOME=str(home), **pg_env)
    engine = sa.create_engine(url)
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            assert instance.run_monitoring_enabled
            assert instance.run_monitoring_max_resume_run_attempts == 0
            assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
            concurrency = instance.get_concurrency_config()
            assert concurrency.pool_config.default_pool_limit == 1
            assert concurrency.run_queue_config.max_concurrent_runs == 4

        # The documented operator command writes the limit into PostgreSQL ...
        _cli(env, str(VENV_BIN / "dagster"), "instance", "concurrency", "set", MINER_HTTP_POOL, "3")
        assert _pool_limits(engine) == {MINER_HTTP_POOL: 3}
        # ... and the settings-driven one puts both pools at the settings' values (1 and 1 by default).
        shown = _cli(env, str(VENV_BIN / "weather-dagster"), "pools", "apply")
        assert shown.splitlines() == [f"{MINER_HTTP_POOL}: 1", f"{SCORING_POOL}: 1"]
        assert _pool_limits(engine) == {MINER_HTTP_POOL: 1, SCORING_POOL: 1}

        _pid, code, output = execute_job(env, stand_in_defs.__name__, stand_in_defs.JOB_NAME, 150)
        assert code == 0, output[-3000:]

        with engine.connect() as conn:
            runs = conn.execute(
                sa.text("SELECT run_id, status FROM runs WHERE pipeline_name = :job"), {"job": stand_in_defs.JOB_NAME}
            ).all()
            assert [status for _, status in runs] == ["SUCCESS"]
            run_id = runs[0][0]
            events = dict(
                conn.execute(
                    sa.text(
                        "SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = :run "
                        "AND dagster_event_type IS NOT NULL GROUP BY dagster_event_type"
                    ),
                    {"run": run_id},
                ).all()
            )
            held = conn.execute(
                sa.text("SELECT count(*) FROM concurrency_slots WHERE run_id = :run"), {"run": run_id}
            ).scalar_one()
        assert events["ASSET_MATERIALIZATION"] == 3 and events["STEP_SUCCESS"] == 3
        assert events[DagsterEventType.RUN_SUCCESS.value] == 1  # stored under its legacy name
        assert held == 0  # every pool slot the run claimed was given back

        with DagsterInstance.from_config(str(home)) as instance:
            meta = {}
            for name in ("miner_http_a", "miner_http_b"):
                event = instance.get_latest_materialization_event(AssetKey(name))
                meta[name] = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        # The multiprocess executor may run two steps at once; the miner_http pool (1 slot) did not let it.
        a, b = meta["miner_http_a"], meta["miner_http_b"]
        assert a["ended"] <= b["started"] or b["ended"] <= a["started"]
    finally:
        engine.dispose()
        pg_server.drop_database(url.render_as_string(hide_password=False))
