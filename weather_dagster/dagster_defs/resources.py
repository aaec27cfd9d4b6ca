"""Dagster resources: plain objects built from the validated settings, handed over as ``ResourceParam``.

None of them is a ``ConfigurableResource``: the product is configured only through :class:`Settings`
(environment or ``.env``, validated once at startup), and a second configuration surface in the UI or
``dagster.yaml`` would let a run score with a grid, profile or publisher the validator's settings do not
say. Tests pass their own instances (a stand-in reference, synthetic scoring inputs) without touching the
environment. The heavy ones (reference adapters, live scoring inputs) are :class:`Lazy`, so loading the
code location imports no xarray, numba or chain SDK; a run builds them on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagster import ResourceParam

from weather_dagster.db.engine import Database
from weather_dagster.settings import Settings

SettingsResource = ResourceParam[Settings]
DatabaseResource = ResourceParam[Database]
# The reference, scoring-input, metagraph and publisher objects, typed loosely on purpose: naming their
# classes here would import their heavy modules with the code location (Dagster reads real annotations).
ReferenceResource = ResourceParam[Any]
ScoringInputsResource = ResourceParam[Any]
MetagraphResource = ResourceParam[Any]
WeightPublisherResource = ResourceParam[Any]


class Lazy:
    """A resource built on first attribute access, once per process (a run, a sensor tick's process)."""

    def __init__(self, factory: Callable[[], Any], name: str) -> None:
        self._factory = factory
        self._name = name
        self._target: Any = None

    def resolve(self) -> Any:
        if self._target is None:
            self._target = self._factory()
        return self._target

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.resolve(), attribute)

    def __repr__(self) -> str:
        return f"Lazy({self._name}, built={self._target is not None})"


def build_resources(settings: Settings, database: Database | None = None) -> dict[str, Any]:
    return {
        "settings": settings,
        "db": database or Database(settings.resolved_database_url),
    }


def step_log(settings: Settings, database: Database):
    """The step log of a run (imported here, not at load: it pulls in the retry policy and the store)."""
    from weather_dagster.core.retry import RetryPolicy
    from weather_dagster.db.steps import StepLog

    return StepLog(database.engine, RetryPolicy.from_settings(settings))
