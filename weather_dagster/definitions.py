"""The code location loaded by ``dagster dev`` and the daemon (see ``workspace.yaml``)."""

from __future__ import annotations

from dagster import Definitions

from weather_dagster.dagster_defs.executors import build_executor
from weather_dagster.dagster_defs.gates import GATE_ASSETS
from weather_dagster.dagster_defs.reference_assets import reference_definitions
from weather_dagster.dagster_defs.resources import build_resources
from weather_dagster.dagster_defs.scoring_assets import SCORING_ASSETS, scoring_resources
from weather_dagster.db.engine import Database
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.settings import Settings, load_settings
from weather_dagster.stats.weights import WeightPublisher


def build_definitions(
    settings: Settings | None = None,
    database: Database | None = None,
    *,
    scoring_inputs: ScoringInputs | None = None,
    weight_publisher: WeightPublisher | None = None,
) -> Definitions:
    settings = settings or load_settings()
    resources = build_resources(settings, database)
    resources.update(scoring_resources(resources["db"], scoring_inputs, weight_publisher))
    reference = reference_definitions(settings)
    return Definitions(
        assets=[*reference.assets, *GATE_ASSETS, *SCORING_ASSETS],
        sensors=[*reference.sensors],
        resources={**resources, **reference.resources},
        executor=build_executor(settings),
    )


defs = build_definitions()
