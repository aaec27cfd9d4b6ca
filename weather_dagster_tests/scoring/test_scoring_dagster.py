"""Real materializations of the scoring assets on seeded rounds, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, materialize

from weather_dagster.core.states import MinerForecastStatus
from weather_dagster.dagster_defs.partitions import miner_round_key
from weather_dagster.dagster_defs.scoring_assets import day1_score, era5_score
from weather_dagster.dagster_defs.statistics import STATISTICS_ASSETS
from weather_dagster.db.schema import (
    component_scores,
    forecast_stats,
    forecast_steps,
    miner_responses,
    miner_scores,
    miner_stats,
    miners,
    round_scores,
    subnet_snapshots,
    weight_sets,
    weights,
)
from weather_dagster.definitions import build_definitions
from weather_dagster.reference.grid import Grid
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.scoring.store import ResponseKey, write_day1, write_era5_lead
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import make_response, make_round, table_rows
from weather_dagster_tests.support.synthetic_scoring import MinerProfile, SyntheticScoringInputs

GRID = Grid(4.0)
PROFILES = {
    1: MinerProfile(phase_deg_per_day=1.0, noise_per_day=0.05, seed=1),
    2: MinerProfile(mode="gfs_clone"),
    3: MinerProfile(mode="extreme"),
    4: MinerProfile(mode="nan", nan_fraction=0.5, seed=4),
}
TABLES = [
    miner_scores,
    component_scores,
    forecast_stats,
    forecast_steps,
    miner_responses,
    round_scores,
    subnet_snapshots,
    miner_stats,
    weight_sets,
    weights,
]


def seed(engine: sa.Engine, init: datetime, inputs: SyntheticScoringInputs) -> int:
    run_id = make_round(engine, init)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for uid in PROFILES:
            conn.execute(
                sa.insert(miners).values(
                    uid=uid, hotkey=f"hk{uid}", coldkey=f"ck{uid}", ip="10.0.0.1", port=8091, updated_at=now
                )
            )
    for uid in PROFILES:
        make_response(engine, run_id, uid, f"hk{uid}")
        inputs.register(run_id, uid, f"hk{uid}", init)
    with engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(status=MinerForecastStatus.FORECAST_READY.value))
    return run_id


@pytest.fixture
def scoring_settings(tmp_path, db_url):
    return load_settings(data_dir=tmp_path / "data", database_url=db_url, test_mode=True)


def snapshot(engine: sa.Engine) -> dict[str, list[dict]]:
    return {table.name: table_rows(engine, table) for table in TABLES}


def test_scoring_assets_materialize_and_a_rerun_leaves_identical_rows(scoring_settings, database):
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
    date = init.strftime("%Y-%m-%d")
    inputs = SyntheticScoringInputs(GRID, profiles=PROFILES)
    run_id = seed(database.engine, init, inputs)
    defs = build_definitions(scoring_settings, database, scoring_inputs=inputs)
    resources = defs.resources
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("miner", [str(uid) for uid in PROFILES])

    def run_all() -> dict:
        results = {}
        for uid in PROFILES:
            result = materialize(
                [day1_score, era5_score],
                partition_key=miner_round_key(date, uid),
                resources=resources,
                instance=instance,
            )
            assert result.success
            results[uid] = result
        for asset in STATISTICS_ASSETS:
            key = date if asset.partitions_def is not None else None
            assert materialize([asset], partition_key=key, resources=resources, instance=instance).success
        return results

    results = run_all()
    first = snapshot(database.engine)

    # Day1 metadata and checks are readable; the GFS clone does not pass Day1.
    meta = {uid: r.asset_materializations_for_node("day1_score")[0].metadata for uid, r in results.items()}
    assert meta[1]["day1_passed"].value is True and meta[1]["day1_score"].value > 0.1
    assert meta[2]["day1_passed"].value is False and meta[2]["day1_score"].value <= 0.05
    # Extreme values: the reference's Day1 has no value check, so Day1 is scored (each variable's
    # 1e13 cell wrecks its pattern correlation: sanity fails, Day1 is 0); ERA5 then rejects it.
    assert meta[3]["status"].value == "scored" and meta[3]["day1_score"].value == 0.0
    assert "| 2t@12h |" in meta[1]["per_variable"].value
    checks = results[1].get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)

    era5_meta = results[1].asset_materializations_for_node("era5_score")[0].metadata
    assert era5_meta["leads_done"].value == ", ".join(f"{h}h" for h in range(24, 241, 24))
    assert era5_meta["era5_completeness"].value == 1.0

    stats = {row["miner_uid"]: row for row in first["weather_forecast_stats"]}
    assert stats[1]["forecast_status"] == "era5_scored" and 0.05 < stats[1]["overall_forecast_score"] <= 1.0
    # The reference's ERA5 extreme-value guard never runs (``extreme_value_check_skipped``): the
    # extreme miner's leads are scored like any other, its one 1e13 cell included.
    assert stats[3]["era5_completeness"] == 1.0
    extreme_steps = [s for s in first["weather_forecast_steps"] if s["step_name"] == "era5" and s["miner_uid"] == 3]
    assert extreme_steps and all(s["status"] == "succeeded" for s in extreme_steps)
    assert stats[4]["era5_completeness"] == 0.0  # every lead failed on coverage
    assert stats[1]["miner_rank"] == 1
    era5_steps = [s for s in first["weather_forecast_steps"] if s["step_name"] == "era5" and s["miner_uid"] == 1]
    assert sorted(s["lead_hours"] for s in era5_steps) == list(range(24, 241, 24))
    assert all(s["status"] == "succeeded" for s in era5_steps)
    nan_steps = [s for s in first["weather_forecast_steps"] if s["step_name"] == "era5" and s["miner_uid"] == 4]
    assert nan_steps and all(s["status"] == "failed" for s in nan_steps)
    vector = {row["miner_uid"]: row for row in first["weather_round_scores"]}
    assert vector[1]["score"] >= vector[2]["score"] > vector[3]["score"] > 0.0  # 3: ERA5 only, no Day1 pass
    assert len(first["weather_weights"]) == 256
    assert sum(row["weight"] for row in first["weather_weights"]) == pytest.approx(1.0)
    assert first["weather_subnet_snapshots"][0]["summary"]["miners"] == 4
    assert {row["miner_uid"] for row in first["miner_stats"]} == set(PROFILES)

    # The profile in force is recorded beside every score, in the snapshot and the asset metadata.
    for table in ("weather_miner_scores", "weather_forecast_component_scores", "weather_forecast_stats"):
        assert first[table] and {row["scoring_profile"] for row in first[table]} == {"reference"}
    assert {row["scoring_profile"] for row in first["weather_round_scores"]} == {"reference"}
    assert first["weather_subnet_snapshots"][0]["summary"]["scoring_profiles"] == ["reference"]
    assert meta[1]["scoring_profile"].value == "reference" and era5_meta["scoring_profile"].value == "reference"

    run_all()
    assert snapshot(database.engine) == first
    assert run_id


def test_rewriting_the_same_scores_leaves_identical_rows(scoring_settings, database):
    init = datetime(2026, 1, 10, tzinfo=UTC)
    inputs = SyntheticScoringInputs(GRID, profiles=PROFILES)
    run_id = seed(database.engine, init, inputs)
    from weather_dagster.scoring.day1 import score_day1
    from weather_dagster.scoring.era5 import score_era5_lead

    forecast = inputs.forecast(run_id, 1, "hk1")
    s = scoring_settings.scoring
    d1 = score_day1(
        forecast, inputs.truth("gfs_analysis", init), inputs.truth("gfs_forecast", init), inputs.climatology(), init, s
    )
    lead = score_era5_lead(forecast, inputs.truth("era5", init), inputs.climatology(), init, 24, s)
    with database.engine.connect() as conn:
        response_id = conn.execute(sa.select(miner_responses.c.id).where(miner_responses.c.miner_uid == 1)).scalar_one()
    key = ResponseKey(response_id, run_id, 1, "hk1")
    for offset in (0, 1):
        with database.engine.begin() as conn:
            write_day1(conn, key, d1, init + timedelta(days=20 + offset), "reference")
            write_era5_lead(conn, key, lead, init + timedelta(days=20 + offset), "reference")
        rows = (table_rows(database.engine, miner_scores), table_rows(database.engine, component_scores))
        if offset == 0:
            before = rows
    assert rows == before
    assert len(rows[0]) == 1 + 5 + 1 + 9 and len(rows[1]) == 5 + 4 + 5 * 13


def test_era5_leads_arrive_one_at_a_time_and_overall_only_rises(scoring_settings, database, steps):
    init = datetime(2026, 1, 10, tzinfo=UTC)
    inputs = SyntheticScoringInputs(GRID, profiles=PROFILES)
    run_id = seed(database.engine, init, inputs)
    engine = database.engine
    assert (
        run_day1(engine, steps, scoring_settings, inputs, run_id, 1, now=init + timedelta(hours=13)).status == "scored"
    )
    overall = []
    for days in (1, 3, 11):
        outcome = run_era5(engine, steps, scoring_settings, inputs, run_id, 1, now=init + timedelta(days=days, hours=1))
        overall.append(outcome.rollup.overall)
        done = [lead for lead, state in outcome.leads.items() if state == "done"]
        assert done == list(range(24, min(24 * days, 240) + 1, 24))
        if days < 10:
            assert outcome.leads[240] == "not_due"
            pending = steps.get(steps_key(run_id, 240))
            assert pending.status == "pending" and pending.next_retry_time == init + timedelta(hours=240)
    assert overall == sorted(overall) and overall[0] < overall[-1]
    with engine.connect() as conn:
        status = conn.execute(sa.select(miner_responses.c.status).where(miner_responses.c.miner_uid == 1)).scalar_one()
    assert status == "era5_scored"


def steps_key(run_id: int, lead: int):
    from weather_dagster.core.states import StepName
    from weather_dagster.db.steps import StepKey

    return StepKey(run_id, 1, "hk1", StepName.ERA5, lead_hours=lead)


def test_definitions_load_without_connecting_and_unconfigured_inputs_say_so(tmp_path):
    from dagster import Definitions

    from weather_dagster.scoring.inputs import UnconfiguredScoringInputs

    settings = load_settings(data_dir=tmp_path / "data")
    defs = build_definitions(settings)
    Definitions.validate_loadable(defs)
    assert not (tmp_path / "data").exists()  # nothing connected or migrated at load time
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"day1_score", "era5_score", "subnet_snapshot", "miner_stats", "round_weights"} <= keys
    with pytest.raises(RuntimeError, match="scoring inputs are not configured"):
        UnconfiguredScoringInputs().forecast(1, 1, "hk")


def test_a_miner_serving_the_720_row_layout_reaches_era5_scored_through_dagster(scoring_settings, database):
    """Aurora's cropped grid (no south-pole row) is scored by real materializations, lead by lead."""
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
    date = init.strftime("%Y-%m-%d")
    profiles = {1: MinerProfile(seed=1, crop_south_row=True)}
    inputs = SyntheticScoringInputs(GRID, profiles=profiles)
    run_id = seed(database.engine, init, inputs)
    resources = build_definitions(scoring_settings, database, scoring_inputs=inputs).resources
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("miner", [str(uid) for uid in PROFILES])
    result = materialize(
        [day1_score, era5_score], partition_key=miner_round_key(date, 1), resources=resources, instance=instance
    )
    assert result.success
    assert inputs.forecast(run_id, 1, "hk1").grid.shape == (GRID.nlat - 1, GRID.nlon)
    meta = result.asset_materializations_for_node("era5_score")[0].metadata
    assert meta["leads_done"].value == ", ".join(f"{h}h" for h in range(24, 241, 24))
    with database.engine.connect() as conn:
        status = conn.execute(sa.select(miner_responses.c.status).where(miner_responses.c.miner_uid == 1)).scalar_one()
        stats = conn.execute(sa.select(forecast_stats).where(forecast_stats.c.miner_uid == 1)).one()
    assert status == "era5_scored" and stats.era5_completeness == 1.0 and stats.overall_forecast_score > 0.5
