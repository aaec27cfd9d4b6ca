"""The code location loaded by ``dagster dev`` and the daemon (see ``workspace.yaml``)."""

from __future__ import annotations

from dagster import Definitions

from weather_dagster.dagster_defs.executors import build_executor
from weather_dagster.dagster_defs.resources import build_resources
from weather_dagster.db.engine import Database
from weather_dagster.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None, database: Database | None = None) -> Definitions:
    settings = settings or load_settings()
    return Definitions(assets=[], resources=build_resources(settings, database), executor=build_executor(settings))


defs = build_definitions()
