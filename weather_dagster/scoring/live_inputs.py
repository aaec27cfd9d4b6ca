"""``ScoringInputs`` over the real adapters: truth from ``ReferenceData``, forecasts through the
verified reader (every byte checked against the frozen manifest)."""

from __future__ import annotations

import contextlib
from datetime import datetime

import numpy as np

from weather_dagster.db.engine import Database
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.settings import Settings


class _GfsForecastByValidTime:
    """Scoring asks for the GFS forecast at a valid time; the adapter is keyed by lead."""

    def __init__(self, source, init_time: datetime) -> None:
        self._source = source
        self._init = init_time

    @property
    def grid(self):
        return self._source.grid

    def _lead(self, valid_time: datetime) -> int:
        return round((valid_time - self._init).total_seconds() / 3600.0)

    def field(self, variable: str, level_hpa: int | None, valid_time: datetime) -> np.ndarray:
        return self._source.field(variable, level_hpa, self._lead(valid_time))

    def cached_digest(self, variable: str, level_hpa: int | None, valid_time: datetime) -> str | None:
        """The digest the partition cache recorded for this field (receipts), or None."""
        return self._source.cached_digest(variable, level_hpa, self._lead(valid_time))


class LiveScoringInputs:
    def __init__(self, settings: Settings, database: Database, reference: ReferenceData) -> None:
        self.settings = settings
        self.database = database
        self.reference = reference
        self._open: list = []

    def truth(self, kind: str, init_time: datetime):
        if kind == "gfs_analysis":
            return self.reference.gfs_analysis()
        if kind == "gfs_forecast":
            return _GfsForecastByValidTime(self.reference.gfs_forecast(init_time), init_time)
        if kind == "era5":
            return self.reference.era5()
        raise ValueError(f"unknown truth kind {kind!r}")

    def climatology(self):
        return self.reference.climatology()

    def forecast(self, run_id: int, uid: int, hotkey: str):
        from weather_dagster.miners.opening import open_verified_forecast

        forecast = open_verified_forecast(self.settings, self.database.engine, run_id, uid, hotkey)
        self._open.append(forecast)
        return forecast

    def release(self) -> None:
        """Close the forecasts opened since the last call (their HTTP clients and buffers)."""
        while self._open:
            with contextlib.suppress(Exception):
                self._open.pop().close()
