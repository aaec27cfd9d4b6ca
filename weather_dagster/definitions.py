"""The code location loaded by ``dagster dev`` and the daemon (see ``workspace.yaml``)."""

from __future__ import annotations

from dagster import Definitions

from weather_dagster.chain.dagster_defs import chain_definitions
from weather_dagster.dagster_defs.automation import AUTOMATION_JOBS, AUTOMATION_SCHEDULES, build_sensors
from weather_dagster.dagster_defs.executors import build_executor
from weather_dagster.dagster_defs.gates import GATE_ASSETS
from weather_dagster.dagster_defs.miner_assets import MINER_ASSETS, MINER_JOBS, metagraph_resource
from weather_dagster.dagster_defs.reference_assets import reference_definitions
from weather_dagster.dagster_defs.resources import build_resources
from weather_dagster.dagster_defs.scoring_assets import SCORING_ASSETS, scoring_resources
from weather_dagster.db.engine import Database
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.scoring.live_inputs import LiveScoringInputs
from weather_dagster.settings import Settings, load_settings
from weather_dagster.stats.weights import WeightPublisher


def build_definitions(
    settings: Settings | None = None,
    database: Database | None = None,
    *,
    scoring_inputs: ScoringInputs | None = None,
    weight_publisher: WeightPublisher | None = None,
) -> Definitions:
    """Everything Dagster shows: reference data -> miners -> scoring -> statistics, and the automation.

    Nothing here connects to a database or a server: resources open lazily when a run uses them.
    """
    settings = settings or load_settings()
    resources = build_resources(settings, database)
    reference = reference_definitions(settings)
    resources.update(reference.resources)
    resources["metagraph"] = metagraph_resource(settings)
    inputs = scoring_inputs or LiveScoringInputs(settings, resources["db"], resources["reference"])
    resources.update(scoring_resources(resources["db"], inputs, weight_publisher))
    # The chain metagraph and publisher replace the file and database ones when settings enable them.
    chain = chain_definitions(settings, resources["db"])
    resources.update({k: v for k, v in chain.resources.items() if not (k == "weight_publisher" and weight_publisher)})
    return Definitions(
        assets=[*reference.assets, *MINER_ASSETS, *GATE_ASSETS, *SCORING_ASSETS],
        jobs=[*MINER_JOBS, *AUTOMATION_JOBS, *chain.jobs],
        schedules=[*AUTOMATION_SCHEDULES, *chain.schedules],
        sensors=[*reference.sensors, *build_sensors(settings)],
        resources=resources,
        executor=build_executor(settings),
    )


defs = build_definitions()
