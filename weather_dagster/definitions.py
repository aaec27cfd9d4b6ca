"""The code location loaded by ``dagster dev`` and the daemon (see ``workspace.yaml``)."""

from __future__ import annotations

from dagster import Definitions

from weather_dagster.dagster_defs.miner_assets import MINER_ASSETS, MINER_JOBS, metagraph_resource
from weather_dagster.dagster_defs.resources import build_resources
from weather_dagster.db.engine import Database
from weather_dagster.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None, database: Database | None = None) -> Definitions:
    settings = settings or load_settings()
    resources = build_resources(settings, database)
    resources["metagraph"] = metagraph_resource(settings)  # miners: the miner set's source
    return Definitions(assets=[*MINER_ASSETS], jobs=[*MINER_JOBS], resources=resources)


defs = build_definitions()
