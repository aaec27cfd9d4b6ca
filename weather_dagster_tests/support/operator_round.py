"""A real round for the operator tests: three demo miners queried, polled and frozen over loopback,
then scored by the scoring service on the synthetic atmosphere.

uid 0 is good and fully scored (a clock past every lead), uid 1 is offline (its query fails for good),
uid 2 is good with its forecast ready; ``score_waiting`` also scores its Day1 and the leads due by now,
leaving the last lead waiting for the clock. ERA5 leads are 24, 48 and 72 h of a round initialised
two days ago, in test mode (no ERA5 delay).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.schema import miner_responses
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import create_round, run_until_settled, seed_miners
from weather_dagster.miners.metagraph import metagraph_from_settings
from weather_dagster.reference.grid import Grid
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.settings import Settings
from weather_dagster_tests.support.miners_support import fleet_config, validator_settings
from weather_dagster_tests.support.synthetic_scoring import SyntheticScoringInputs

ROSTER = [Behaviour.GOOD, Behaviour.OFFLINE, Behaviour.GOOD]
SCORED, FAILED, WAITING = 0, 1, 2
LEADS = (24, 48, 72)


@dataclass
class OperatorRound:
    settings: Settings
    engine: sa.Engine
    run_id: int
    init: datetime
    inputs: SyntheticScoringInputs

    @property
    def date(self):
        return self.init.date()

    def steps(self) -> StepLog:
        return StepLog(self.engine, RetryPolicy.from_settings(self.settings))


def operator_settings(tmp_path: Path, db_url: str, fleet: DemoFleet) -> Settings:
    base = validator_settings(tmp_path, db_url, fleet.write_metagraph(tmp_path / "metagraph.json"))
    scoring = base.scoring.model_copy(update={"era5_lead_hours": LEADS})
    return base.model_copy(update={"test_mode": True, "scoring": scoring})


def start_fleet() -> DemoFleet:
    return DemoFleet(fleet_config(ROSTER))


def build_round(settings: Settings, engine: sa.Engine, *, score_waiting: bool) -> OperatorRound:
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    run_id = create_round(engine, init, settings)
    steps = StepLog(engine, RetryPolicy.from_settings(settings))
    seed_miners(engine, steps, run_id, metagraph_from_settings(settings).snapshot())
    keypair = validator_keypair(settings)
    for _ in range(40):
        if asyncio.run(run_until_settled(settings, engine, run_id, keypair, max_wait_s=15)):
            break
    inputs = SyntheticScoringInputs(Grid(4.0))
    with engine.connect() as conn:
        for row in conn.execute(sa.select(miner_responses).where(miner_responses.c.run_id == run_id)):
            inputs.register(run_id, row.miner_uid, row.miner_hotkey, init)
    late = init + timedelta(days=4)  # every lead's truth is due by then
    run_day1(engine, steps, settings, inputs, run_id, SCORED, now=late)
    run_era5(engine, steps, settings, inputs, run_id, SCORED, now=late)
    if score_waiting:
        run_day1(engine, steps, settings, inputs, run_id, WAITING)
        run_era5(engine, steps, settings, inputs, run_id, WAITING)
    return OperatorRound(settings, engine, run_id, init, inputs)
