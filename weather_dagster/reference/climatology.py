"""Climatology from the WeatherBench 2 ERA5 1990-2019 6-hourly Zarr, one (day-of-year, hour) slice.

The full store is ~419 GB; only the slices in use are read (one chunk per variable and slice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from weather_dagster.core.errors import SourceError
from weather_dagster.reference.canonical import canonical_dataset, check_field, orient
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.variables import VARIABLES
from weather_dagster.reference.zarr_http import LazyConsolidatedStore, read


def climatology_key(day_of_year: int, hour: int) -> str:
    """The static partition key, e.g. ``001-00``."""
    if not 1 <= day_of_year <= 366 or hour not in (0, 6, 12, 18):
        raise ValueError(f"no climatology slice for day {day_of_year}, hour {hour}")
    return f"{day_of_year:03d}-{hour:02d}"


def parse_climatology_key(key: str) -> tuple[int, int]:
    day, _, hour = key.partition("-")
    result = (int(day), int(hour))
    climatology_key(*result)
    return result


@dataclass
class ClimatologyStore:
    url: str
    grid: Grid
    timeout_s: float = 60.0
    _store: LazyConsolidatedStore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._store = LazyConsolidatedStore(self.url, self.timeout_s)

    def dataset(self) -> xr.Dataset:
        return self._store.dataset()

    def load(self, day_of_year: int, hour: int, variables: tuple[str, ...], levels: tuple[int, ...]) -> xr.Dataset:
        ds = self.dataset()
        for coord, value in (("dayofyear", day_of_year), ("hour", hour)):
            if value not in ds[coord].values:
                raise SourceError(self.url, f"climatology has no {coord} {value}")
        fields: dict[tuple[str, int | None], np.ndarray] = {}
        for name in variables:
            spec = VARIABLES[name]
            da = ds[spec.era5_name].sel(dayofyear=day_of_year, hour=hour)
            if spec.atmospheric:
                present = {int(v) for v in ds["level"].values}
                missing = [lvl for lvl in levels if lvl not in present]
                if missing:
                    raise SourceError(self.url, f"missing levels {missing} of {spec.era5_name}")
                values = orient(read(da.sel(level=list(levels)), self.url), self.grid, self.url)
                for i, level in enumerate(levels):
                    fields[(name, level)] = np.ascontiguousarray(values[i])
            else:
                fields[(name, None)] = orient(read(da, self.url), self.grid, self.url)
        for (name, level), values in fields.items():
            check_field(values, name, level, self.grid, self.url)
        attrs = {"source": "climatology", "source_url": self.url, "dayofyear": day_of_year, "hour": hour}
        return canonical_dataset(fields, variables, levels, self.grid, attrs=attrs)
