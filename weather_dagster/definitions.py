"""The code location loaded by ``dagster dev`` and the daemon (see ``workspace.yaml``).

Each domain exports its own ``Definitions`` (reference, miners, scoring, statistics, automation,
chain); they are merged here with the one set of resources and the default executor. Nothing here
connects to a database or a server, and no heavy module (xarray, numba, matplotlib, the chain SDK) is
imported: resources open lazily when a run uses them.
"""

from __future__ import annotations

from typing import Any

from dagster import Definitions

from weather_dagster.chain.dagster_defs import chain_definitions
from weather_dagster.dagster_defs.automation import automation_definitions
from weather_dagster.dagster_defs.executors import build_executor
from weather_dagster.dagster_defs.miner_assets import SettingsMetagraph, miner_definitions
from weather_dagster.dagster_defs.operator_jobs import OPERATOR_DEFINITIONS
from weather_dagster.dagster_defs.reference_assets import reference_definitions
from weather_dagster.dagster_defs.resources import Lazy, build_resources
from weather_dagster.dagster_defs.scoring_assets import scoring_definitions
from weather_dagster.dagster_defs.statistics import statistics_definitions, weight_publisher_resource
from weather_dagster.db.engine import Database
from weather_dagster.settings import Settings, load_settings


def _live_inputs(settings: Settings, database: Database, reference: Any) -> Lazy:
    def build() -> Any:
        from weather_dagster.scoring.live_inputs import LiveScoringInputs

        return LiveScoringInputs(settings, database, reference.resolve() if isinstance(reference, Lazy) else reference)

    return Lazy(build, "scoring_inputs")


def build_definitions(
    settings: Settings | None = None,
    database: Database | None = None,
    *,
    scoring_inputs: Any = None,
    weight_publisher: Any = None,
) -> Definitions:
    """Everything Dagster shows: reference data -> miners -> scoring -> statistics, and the automation."""
    settings = settings or load_settings()
    resources = build_resources(settings, database)
    reference = reference_definitions(settings)
    resources.update(reference.resources)
    resources["metagraph"] = SettingsMetagraph(settings)
    resources["scoring_inputs"] = scoring_inputs or _live_inputs(settings, resources["db"], resources["reference"])
    resources["weight_publisher"] = weight_publisher or weight_publisher_resource(resources["db"])
    # The chain metagraph and publisher replace the file and database ones when settings enable them.
    chain = chain_definitions(settings, resources["db"])
    resources.update(
        {k: v for k, v in (chain.resources or {}).items() if not (k == "weight_publisher" and weight_publisher)}
    )
    domains = [
        Definitions(assets=reference.assets, sensors=reference.sensors),
        miner_definitions(),
        scoring_definitions(settings),
        statistics_definitions(),
        automation_definitions(settings),
        Definitions(jobs=chain.jobs, schedules=chain.schedules),
        OPERATOR_DEFINITIONS,
    ]
    return Definitions.merge(*domains, Definitions(resources=resources, executor=build_executor(settings)))


defs = build_definitions()
