"""Where scoring gets its fields: one small interface, so Dagster assets and tests share the scorers.

The production implementation wires the verified forecast reader and the GFS / ERA5 / climatology
adapters (other areas); :class:`UnconfiguredScoringInputs` is the default until they are passed to
``build_definitions`` and says so loudly instead of scoring against nothing. Tests and the benchmark
use ``weather_dagster_tests.support.synthetic_scoring.SyntheticScoringInputs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from weather_dagster.reference.interfaces import ClimatologySource, FieldSource, ForecastSource

TruthKind = Literal["gfs_analysis", "gfs_forecast", "era5"]


class ScoringInputs(Protocol):
    def truth(self, kind: TruthKind, init_time: datetime) -> FieldSource:
        """GFS analysis / ERA5 by valid time, or the GFS forecast of ``init_time`` by valid time."""
        ...

    def climatology(self) -> ClimatologySource: ...

    def forecast(self, run_id: int, uid: int, hotkey: str) -> ForecastSource:
        """The miner's verified forecast (frozen manifest checked on every read)."""
        ...


class UnconfiguredScoringInputs:
    """Placeholder resource: raises a clear error if scoring runs before real inputs are wired."""

    def _fail(self) -> None:
        raise RuntimeError(
            "scoring inputs are not configured: pass scoring_inputs=... (the verified forecast reader and "
            "the GFS/ERA5/climatology adapters) to build_definitions"
        )

    def truth(self, kind: TruthKind, init_time: datetime) -> FieldSource:
        self._fail()
        raise AssertionError

    def climatology(self) -> ClimatologySource:
        self._fail()
        raise AssertionError

    def forecast(self, run_id: int, uid: int, hotkey: str) -> ForecastSource:
        self._fail()
        raise AssertionError
