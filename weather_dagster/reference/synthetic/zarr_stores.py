"""Write ARCO-ERA5-style and WeatherBench-2-style climatology Zarr stores from the synthetic atmosphere.

Both are Zarr v2 with consolidated metadata, long ERA5 variable names, ``latitude`` 90 -> -90 and
``longitude`` 0 -> 360; like ARCO, one ERA5 chunk holds one variable at one time with all levels.
The synthetic ERA5 holds only the 13 scored levels and the chosen times (the real store has 37
levels, hourly): the adapter selects by coordinate value, so it reads both the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from weather_dagster.reference.variables import PRESSURE_LEVELS_HPA, VARIABLES


def _naive(times: Iterable[datetime]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([t.replace(tzinfo=None) for t in times])


def era5_dataset(atmosphere, times: list[datetime], levels: tuple[int, ...] = PRESSURE_LEVELS_HPA) -> xr.Dataset:
    grid = atmosphere.grid
    data_vars = {}
    for name, spec in VARIABLES.items():
        if spec.atmospheric:
            values = np.stack([np.stack([atmosphere.field(name, lvl, t) for lvl in levels]) for t in times])
            data_vars[spec.era5_name] = (("time", "level", "latitude", "longitude"), values, {"units": spec.units})
        else:
            values = np.stack([atmosphere.field(name, None, t) for t in times])
            data_vars[spec.era5_name] = (("time", "latitude", "longitude"), values, {"units": spec.units})
    return xr.Dataset(
        data_vars,
        coords={
            "time": _naive(times),
            "level": ("level", np.array(levels, dtype=np.int64)),
            "latitude": ("latitude", grid.latitudes.astype(np.float32)),
            "longitude": ("longitude", grid.longitudes.astype(np.float32)),
        },
    )


def write_era5_zarr(
    path: Path,
    atmosphere,
    times: list[datetime],
    *,
    levels: tuple[int, ...] = PRESSURE_LEVELS_HPA,
    era5t_stop: datetime | None = None,
    consolidated: bool = True,
) -> Path:
    """An ARCO-like store; ``valid_time_stop_era5t`` defaults to the last time written."""
    ds = era5_dataset(atmosphere, times, levels)
    stop = era5t_stop or max(times)
    ds.attrs = {
        "valid_time_start": min(times).strftime("%Y-%m-%d"),
        "valid_time_stop": min(times).strftime("%Y-%m-%d"),
        "valid_time_stop_era5t": stop.strftime("%Y-%m-%d"),
    }
    encoding = {name: {"chunks": (1, *ds[name].shape[1:])} for name in ds.data_vars}
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=consolidated, encoding=encoding)
    return path


def write_climatology_zarr(
    path: Path,
    atmosphere,
    days_of_year: Iterable[int],
    hours: Iterable[int] = (0, 6, 12, 18),
    *,
    levels: tuple[int, ...] = PRESSURE_LEVELS_HPA,
    consolidated: bool = True,
    real_chunks: bool = False,
) -> Path:
    """A WeatherBench-2-like climatology (``hour`` x ``dayofyear``) holding only the chosen slices.

    ``real_chunks``: chunk like the real store, (3 hour, 3 dayofyear, 1 level, whole grid), so one
    chunk holds nine slots (to line up with the real chunk boundaries, start the days at 1 + 3k);
    otherwise one chunk per slot with every level.
    """
    days, hours = list(days_of_year), list(hours)
    grid = atmosphere.grid
    data_vars = {}
    for name, spec in VARIABLES.items():
        level_list = levels if spec.atmospheric else (None,)
        values = np.stack(
            [
                np.stack([np.stack([atmosphere.climatology(name, lvl, d, h) for lvl in level_list]) for d in days])
                for h in hours
            ]
        )
        if spec.atmospheric:
            data_vars[spec.era5_name] = (("hour", "dayofyear", "level", "latitude", "longitude"), values)
        else:
            data_vars[spec.era5_name] = (("hour", "dayofyear", "latitude", "longitude"), values[:, :, 0])
        data_vars[spec.era5_name] += ({"units": spec.units},)
    ds = xr.Dataset(
        data_vars,
        coords={
            "hour": ("hour", np.array(hours, dtype=np.int64)),
            "dayofyear": ("dayofyear", np.array(days, dtype=np.int64)),
            "level": ("level", np.array(levels, dtype=np.int64)),
            "latitude": ("latitude", grid.latitudes),
            "longitude": ("longitude", grid.longitudes),
        },
    )
    real = {"hour": 3, "dayofyear": 3, "level": 1}
    encoding = {
        name: {
            "chunks": tuple(
                (real.get(str(dim), size) if real_chunks else (1 if dim in ("hour", "dayofyear") else size))
                for dim, size in zip(ds[name].dims, ds[name].shape, strict=True)
            )
        }
        for name in ds.data_vars
    }
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=consolidated, encoding=encoding)
    return path
