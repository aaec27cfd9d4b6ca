"""The interface every field provider implements: truth sources, climatology and miner forecasts.

Scoring streams one 2-D field at a time through these, so memory stays bounded whatever the grid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import numpy as np

from weather_dagster.reference.grid import Grid


class FieldSource(Protocol):
    """Truth at a valid time: GFS analysis or forecast, ERA5, or the synthetic atmosphere."""

    grid: Grid

    def field(self, variable: str, level_hpa: int | None, valid_time: datetime) -> np.ndarray:
        """A float32 (nlat, nlon) array on ``grid``; raises TruthNotAvailable / SourceError."""
        ...


class ClimatologySource(Protocol):
    grid: Grid

    def field(self, variable: str, level_hpa: int | None, day_of_year: int, hour: int) -> np.ndarray: ...


class ForecastSource(Protocol):
    """One miner's forecast, read field by field (the verified forecast reader implements this)."""

    grid: Grid

    def field(self, variable: str, level_hpa: int | None, lead_hours: int) -> np.ndarray:
        """A float32 (nlat, nlon) array; raises InvalidDataError for anything wrong with the data."""
        ...
