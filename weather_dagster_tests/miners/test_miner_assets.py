"""Real Dagster materializations of forecast_round and miner_forecast against the demo fleet."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from dagster import AssetKey, DagsterInstance, materialize

from weather_dagster.dagster_defs.miner_assets import forecast_round, miner_forecast
from weather_dagster.dagster_defs.partitions import MINER_PARTITIONS_NAME, miner_round_key
from weather_dagster.db.schema import forecast_stats, forecast_steps, miner_responses, miners
from weather_dagster.definitions import build_definitions
from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster_tests.support.miners_support import fleet_config, validator_settings

DATE = "2026-11-20"


def test_round_and_miner_partitions_through_dagster(tmp_path: Path, db_url: str, database) -> None:
    with DemoFleet(fleet_config([Behaviour.GOOD, Behaviour.GOOD, Behaviour.FETCH_REJECTED])) as fleet:
        settings = validator_settings(tmp_path, db_url, fleet.write_metagraph(tmp_path / "metagraph.json"))
        defs = build_definitions(settings, database)
        resources = defs.resources
        with DagsterInstance.ephemeral() as instance:
            result = materialize([forecast_round], partition_key=DATE, resources=resources, instance=instance)
            assert result.success
            assert sorted(instance.get_dynamic_partitions(MINER_PARTITIONS_NAME)) == ["0", "1", "2"]
            # Seeded: three miners, each with a response, a stats row and a pending query step.
            with database.engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(miners)).scalar() == 3
                assert conn.execute(sa.select(sa.func.count()).select_from(forecast_stats)).scalar() == 3
                steps = conn.execute(sa.select(forecast_steps.c.step_name, forecast_steps.c.status)).all()
            assert sorted(steps) == [("query", "pending")] * 3
            # Materializing again is harmless: same rows, no new partitions.
            assert materialize([forecast_round], partition_key=DATE, resources=resources, instance=instance).success

            # One partition's run: its query succeeds, its first poll waits -> success, no materialization.
            selection = [forecast_round, miner_forecast]
            waiting = materialize(
                selection,
                selection=[miner_forecast],
                partition_key=miner_round_key(DATE, 1),
                resources=resources,
                instance=instance,
            )
            assert waiting.success and not waiting.asset_materializations_for_node("miner_forecast")
            with database.engine.connect() as conn:
                step = conn.execute(
                    sa.select(forecast_steps.c.status, forecast_steps.c.dagster_run_id).where(
                        forecast_steps.c.miner_uid == 1, forecast_steps.c.step_name == "query"
                    )
                ).one()
            assert tuple(step) == ("succeeded", waiting.run_id)

            # The batched job moves every miner; each ready one gets its own materialization.
            job = defs.resolve_job_def("advance_miners_job")
            for _ in range(40):
                assert job.execute_in_process(instance=instance).success
                with database.engine.connect() as conn:
                    statuses = dict(
                        conn.execute(sa.select(miner_responses.c.miner_uid, miner_responses.c.status)).all()
                    )
                if statuses[0] == statuses[1] == "forecast_ready":
                    break
                time.sleep(0.1)
            assert statuses == {0: "forecast_ready", 1: "forecast_ready", 2: "failed"}
            materialized = instance.get_materialized_partitions(AssetKey("miner_forecast"))
            assert materialized == {f"{DATE}|0", f"{DATE}|1"}

            # A single partition run: ready -> materialized; rejected -> the run fails, no retry.
            ready = materialize(
                selection,
                selection=[miner_forecast],
                partition_key=miner_round_key(DATE, 0),
                resources=resources,
                instance=instance,
            )
            assert ready.success
            meta = ready.asset_materializations_for_node("miner_forecast")[0].metadata
            assert meta["status"].value == "forecast_ready" and meta["manifest_files"].value > 100
            rejected = materialize(
                selection,
                selection=[miner_forecast],
                partition_key=miner_round_key(DATE, 2),
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )
            assert not rejected.success
            assert not rejected.asset_materializations_for_node("miner_forecast")

            # Nothing the fleet issued (JWTs, symmetric keys) is in Dagster's event log.
            logs = "\n".join(
                str(entry.dagster_event or entry.user_message)
                for run in instance.get_runs()
                for entry in instance.all_logs(run.run_id)
            )
            assert "forecast_ready" in logs and len(fleet.issued_tokens()) >= 6
            for secret in fleet.issued_tokens():
                assert secret not in logs
