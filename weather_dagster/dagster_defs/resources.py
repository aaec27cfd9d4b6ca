"""Dagster resources: the validated settings and the product database.

Both are plain objects handed to Dagster as resources, so assets receive them typed through
``ResourceParam`` and tests can pass their own instances without touching the environment.
"""

from __future__ import annotations

from typing import Any

from dagster import ResourceParam

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.engine import Database
from weather_dagster.db.steps import StepLog
from weather_dagster.settings import Settings

SettingsResource = ResourceParam[Settings]
DatabaseResource = ResourceParam[Database]


def build_resources(settings: Settings, database: Database | None = None) -> dict[str, Any]:
    return {
        "settings": settings,
        "db": database or Database(settings.resolved_database_url),
    }


def step_log(settings: Settings, database: Database) -> StepLog:
    return StepLog(database.engine, RetryPolicy.from_settings(settings))
