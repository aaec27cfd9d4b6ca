"""ERA5 truth from the public analysis-ready (ARCO) Zarr store, plus the availability probe.

ARCO keeps one chunk per variable and hour with all 37 levels: one read per variable and valid time
gives every level, and only the scored ones are kept. The time axis runs ahead of the data (filled
with NaN), so availability comes from the store's ``valid_time_stop_era5t`` attribute, then a finite
check of the field itself, never from the clock alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import xarray as xr

from weather_dagster.core.errors import SourceError, TruthNotAvailable
from weather_dagster.reference.canonical import REJECTED, canonical_dataset, check_fields, orient
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.http import Timeouts
from weather_dagster.reference.variables import VARIABLES
from weather_dagster.reference.zarr_http import LazyConsolidatedStore, read


def _naive_utc(when: datetime) -> np.datetime64:
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(when, "ns")


@dataclass
class Era5Store:
    url: str
    grid: Grid
    timeouts: Timeouts = field(default_factory=Timeouts)
    _store: LazyConsolidatedStore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._store = LazyConsolidatedStore(self.url, self.timeouts)

    def dataset(self) -> xr.Dataset:
        return self._store.dataset()

    def era5t_stop(self) -> datetime:
        """The last day of preliminary (ERA5T) data the store says it holds (inclusive, to 23:00)."""
        attrs = self.dataset().attrs
        raw = attrs.get("valid_time_stop_era5t") or attrs.get("valid_time_stop")
        if not raw:
            raise SourceError(self.url, "store has no valid_time_stop_era5t / valid_time_stop attribute")
        stop = pd.Timestamp(raw)
        if stop.tzinfo is None:
            stop = stop.tz_localize("UTC")
        if len(str(raw)) <= 10:  # a date: the whole day is published
            stop = stop + pd.Timedelta(hours=23)
        return stop.to_pydatetime()

    def _time_index(self, valid_time: datetime) -> np.datetime64:
        ds = self.dataset()
        stamp = _naive_utc(valid_time)
        if valid_time.astimezone(UTC) > self.era5t_stop():
            raise TruthNotAvailable(f"ERA5 at {valid_time.isoformat()} not published yet (url: {self.url})")
        if stamp not in ds["time"].values:
            raise TruthNotAvailable(f"ERA5 has no time {valid_time.isoformat()} (url: {self.url})")
        return stamp

    def available(self, valid_time: datetime, probe_variable: str = "2t") -> bool:
        """Is this valid time published and finite? (reads one surface field)"""
        try:
            stamp = self._time_index(valid_time)
        except TruthNotAvailable:
            return False
        da = read(self.dataset()[VARIABLES[probe_variable].era5_name].sel(time=stamp), self.url)
        return bool(np.isfinite(da.values).all())

    def load(self, valid_time: datetime, variables: tuple[str, ...], levels: tuple[int, ...]) -> xr.Dataset:
        """All scored fields at one valid time as a canonical dataset (one chunk read per variable)."""
        stamp = self._time_index(valid_time)
        ds = self.dataset()
        fields: dict[tuple[str, int | None], np.ndarray] = {}
        for name in variables:
            spec = VARIABLES[name]
            da = ds[spec.era5_name].sel(time=stamp)
            if spec.atmospheric:
                present = set(np.asarray(ds["level"].values).tolist())
                missing = [lvl for lvl in levels if lvl not in present]
                if missing:
                    raise SourceError(self.url, f"missing levels {missing} of {spec.era5_name}")
                values = orient(read(da, self.url), self.grid, self.url)  # the whole chunk, once
                level_index = {int(lvl): i for i, lvl in enumerate(ds["level"].values)}
                for level in levels:
                    fields[(name, level)] = np.ascontiguousarray(values[level_index[level]])
            else:
                fields[(name, None)] = orient(read(da, self.url), self.grid, self.url)
        rejected = check_fields(fields, self.grid, self.url)
        attrs = {"source": "era5", "source_url": self.url, REJECTED: rejected}
        return canonical_dataset(fields, variables, levels, self.grid, attrs=attrs)
