"""A round on any GFS cycle (00, 06, 12, 18 Z) is found by every asset keyed by its date.

The partition key is the init date; the init is that date at ``round.gfs_cycle_hour_utc``. An asset
that maps the date to midnight finds no round on a 06Z deployment: Day1 and ERA5 score nothing, the
snapshot and the weights see an empty round, the ERA5 gate counts leads from the wrong init.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, MultiPartitionKey, materialize

from weather_dagster.core.states import MinerForecastStatus
from weather_dagster.db.schema import miner_responses, miners, subnet_snapshots
from weather_dagster.definitions import build_definitions
from weather_dagster.orchestration.readiness import ready_leads
from weather_dagster.reference.grid import Grid
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import make_response, make_round
from weather_dagster_tests.support.synthetic_scoring import MinerProfile, SyntheticScoringInputs

UID = 1
GRID = Grid(4.0)


class AlwaysPublished:
    """Stands in for ``ReferenceData`` in the gate: only ``era5_available`` is read there."""

    def era5_available(self, valid_time: datetime) -> bool:
        return True


def _seed(engine: sa.Engine, init: datetime, inputs: SyntheticScoringInputs) -> int:
    run_id = make_round(engine, init)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(miners).values(
                uid=UID, hotkey="hk1", coldkey="ck1", ip="10.0.0.1", port=8091, updated_at=datetime.now(UTC)
            )
        )
    make_response(engine, run_id, UID, "hk1")
    inputs.register(run_id, UID, "hk1", init)
    with engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(status=MinerForecastStatus.FORECAST_READY.value))
    return run_id


@pytest.mark.parametrize("cycle", [0, 6, 12, 18])
def test_every_date_keyed_asset_finds_the_round_of_its_cycle(cycle, tmp_path, db_url, database) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        test_mode=True,
        round={"gfs_cycle_hour_utc": cycle},
        scoring={"era5_lead_hours": [24, 48]},
    )
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
    init = day + timedelta(hours=cycle)
    date = day.strftime("%Y-%m-%d")
    inputs = SyntheticScoringInputs(GRID, profiles={UID: MinerProfile(phase_deg_per_day=1.0, seed=1)})
    run_id = _seed(database.engine, init, inputs)
    defs = build_definitions(settings, database, scoring_inputs=inputs)
    resources = {**defs.resources, "reference": AlwaysPublished()}
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("miner", [str(UID)])

    def run(name: str, partition_key):
        result = materialize(
            [defs.get_assets_def(name)], partition_key=partition_key, resources=resources, instance=instance
        )
        assert result.success, name
        return result.asset_materializations_for_node(name)[0].metadata

    key = MultiPartitionKey({"date": date, "miner": str(UID)})
    day1 = run("day1_score", key)
    assert day1["status"].value == "scored", day1["detail"].value
    era5 = run("era5_score", key)
    assert era5["status"].value == "scored", era5["detail"].value
    assert era5["leads_done"].value == "24h, 48h"
    gate = run("era5_truth_gate", date)
    expected = ready_leads(init, settings, datetime.now(UTC), AlwaysPublished().era5_available)
    assert gate["ready_leads"].value == ", ".join(map(str, expected))
    snapshot = run("subnet_snapshot", date)
    assert snapshot["scored"].value == 1
    weights = run("round_weights", date)
    assert weights["rounds_in_window"].value == 1 and weights["weight_sum"].value > 0
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(subnet_snapshots.c.run_id)).scalars().all() == [run_id]
